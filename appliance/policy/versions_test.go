package policy

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// TestVersioning: every change is a version; history is kept; rollback
// makes a new version equal to an old one; delete is a version too; every
// change is audited with actor, action, target and detail; the Set that
// admission reads follows at once, and survives a restart.
func TestVersioning(t *testing.T) {
	e := newEnv(t, "user")
	sub := Subject{SubjectAgent, "a1"}
	req := baseReq()
	req.MemoryBytes = 2 * gi

	c1, err := e.svc.Put(ctx, "alice", mustDoc(t, "agent/a1", "{max: {memory: 4Gi}}"), 0)
	if err != nil || c1.Action != ActionCreate || c1.Policy.Version != 1 {
		t.Fatalf("create: %+v %v", c1, err)
	}
	e.clock.Advance(time.Minute)
	c2, err := e.svc.Put(ctx, "bob", mustDoc(t, "agent/a1", "{max: {memory: 1Gi}}"), 1)
	if err != nil || c2.Action != ActionUpdate || c2.Policy.Version != 2 {
		t.Fatalf("update: %+v %v", c2, err)
	}
	if d := e.svc.Evaluate(req); d.Allow || d.Rule != "policy:agent/a1@v2 max.memory" {
		t.Fatalf("after update: %+v", d)
	}
	// The same document again changes nothing and records nothing.
	before := len(e.audit(t, 0))
	c, err := e.svc.Put(ctx, "bob", mustDoc(t, "agent/a1", "{max: {memory: 1Gi}}"), 0)
	if err != nil || !c.Unchanged || c.Policy.Version != 2 || len(e.audit(t, 0)) != before {
		t.Fatalf("unchanged put: %+v %v", c, err)
	}
	// A stale version is refused, and the refusal audited.
	if _, err := e.svc.Put(ctx, "carol", mustDoc(t, "agent/a1", "{max: {memory: 8Gi}}"), 1); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale put: %v", err)
	}
	c3, err := e.svc.Rollback(ctx, "alice", sub, 1, 2)
	if err != nil || c3.Action != ActionRollback || c3.Policy.Version != 3 || c3.Policy.Spec.Max.Memory != "4Gi" {
		t.Fatalf("rollback: %+v %v", c3, err)
	}
	if d := e.svc.Evaluate(req); !d.Allow || !strings.Contains(strings.Join(d.Applied, " "), "policy:agent/a1@v3") {
		t.Fatalf("after rollback: %+v", d)
	}
	if _, err := e.svc.Rollback(ctx, "alice", sub, 3, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("rollback to the current version: %v", err)
	}
	if _, err := e.svc.Rollback(ctx, "alice", sub, 9, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to a missing version: %v", err)
	}
	c4, err := e.svc.Delete(ctx, "alice", sub, 3)
	if err != nil || c4.Policy.Version != 4 {
		t.Fatalf("delete: %+v %v", c4, err)
	}
	if _, err := e.svc.Get(ctx, sub); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
	if _, err := e.svc.Rollback(ctx, "alice", sub, 4, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("rollback to a deletion: %v", err)
	}
	if _, err := e.svc.Delete(ctx, "alice", sub, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if d := e.svc.Evaluate(req); !d.Allow || d.Explicit {
		t.Fatalf("after delete: %+v", d)
	}
	c5, err := e.svc.Rollback(ctx, "dave", sub, 2, 0)
	if err != nil || c5.Policy.Version != 5 {
		t.Fatalf("rollback after delete: %+v %v", c5, err)
	}

	hist, err := e.svc.History(ctx, sub, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range hist {
		got = append(got, string(v.Action)+":"+v.Actor)
	}
	if strings.Join(got, " ") != "rollback:dave delete:alice rollback:alice update:bob create:alice" {
		t.Errorf("history %v", got)
	}
	if hist[0].FromVersion != 2 || hist[0].Spec.Max.Memory != "1Gi" || hist[1].Spec != nil || !hist[3].At.Equal(hist[4].At.Add(time.Minute)) {
		t.Errorf("history details: %+v", hist)
	}
	if page, _ := e.svc.History(ctx, sub, 3, 1); len(page) != 1 || page[0].Version != 2 {
		t.Errorf("history page: %+v", page)
	}
	if v, err := e.svc.Version(ctx, sub, 1); err != nil || v.Spec.Max.Memory != "4Gi" {
		t.Errorf("version 1: %+v %v", v, err)
	}

	checkAudit(t, e.audit(t, 0), []string{
		"alice policy.create agent/a1 version=1",
		"bob policy.update agent/a1 version=2",
		"carol policy.put agent/a1 outcome=refused",
		"alice policy.rollback agent/a1 version=3 from_version=1",
		"alice policy.rollback agent/a1 outcome=refused",
		"alice policy.rollback agent/a1 outcome=refused",
		"alice policy.delete agent/a1 version=4",
		"alice policy.rollback agent/a1 outcome=refused",
		"alice policy.delete agent/a1 outcome=refused",
		"dave policy.rollback agent/a1 version=5 from_version=2",
	})
	if _, err := e.st.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain: %v", err)
	}

	// A new Service on the same store starts from what is stored.
	again, err := New(ctx, Options{Store: e.st, Profile: "user"})
	if err != nil {
		t.Fatal(err)
	}
	if d := again.Evaluate(req); d.Allow || d.Rule != "policy:agent/a1@v5 max.memory" {
		t.Errorf("after restart: %+v", d)
	}
}

// checkAudit compares records with "actor action target key=value...",
// each key naming a detail field that must hold that value.
func checkAudit(t *testing.T, recs []store.AuditRecord, want []string) {
	t.Helper()
	if len(recs) != len(want) {
		for _, r := range recs {
			t.Logf("%s %s %s %s", r.Actor, r.Action, r.Target, r.Detail)
		}
		t.Fatalf("got %d audit records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		f := strings.Fields(w)
		r := recs[i]
		if f[2] == "-" {
			f[2] = ""
		}
		if r.Actor != f[0] || r.Action != f[1] || r.Target != f[2] {
			t.Errorf("record %d: %s %s %s, want %s", i, r.Actor, r.Action, r.Target, w)
			continue
		}
		var d map[string]any
		if err := json.Unmarshal(r.Detail, &d); err != nil {
			t.Fatal(err)
		}
		for _, kv := range f[3:] {
			k, v, _ := strings.Cut(kv, "=")
			if got, _ := json.Marshal(d[k]); strings.Trim(string(got), `"`) != v {
				t.Errorf("record %d (%s): %s = %s, want %s", i, w, k, got, v)
			}
		}
	}
}

// TestChangedFields: the audit detail names the rules a change touched.
func TestChangedFields(t *testing.T) {
	e := newEnv(t, "user")
	if _, err := e.svc.Put(ctx, "alice", mustDoc(t, "tenant/default", "{max: {memory: 4Gi, cpu: 2}, secrets: [/a]}"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Put(ctx, "alice", mustDoc(t, "tenant/default", "{max: {memory: 8Gi, cpu: 2}, gpu: {allowed: false}}"), 0); err != nil {
		t.Fatal(err)
	}
	recs := e.audit(t, 0)
	var d struct{ Changed []string }
	if err := json.Unmarshal(recs[len(recs)-1].Detail, &d); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Changed, " "); got != "spec.gpu.allowed spec.max.memory spec.secrets" {
		t.Errorf("changed %q", got)
	}
}

// TestPutChecks: a document built in code is checked as Parse checks it;
// the actor is required; a refusal is audited.
func TestPutChecks(t *testing.T) {
	e := newEnv(t, "user")
	doc := &Document{Subject: Subject{SubjectAgent, "a1"}, Spec: Spec{Max: &Max{Memory: "lots"}}}
	_, err := e.svc.Put(ctx, "alice", doc, 0)
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Problems[0].Path != "spec.max.memory" {
		t.Fatalf("bad document: %v", err)
	}
	if _, err := e.svc.Put(ctx, "", mustDoc(t, "agent/a1", "{}"), 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("no actor: %v", err)
	}
	// Categories are one subject whatever their case.
	if _, err := e.svc.Put(ctx, "alice", mustDoc(t, "category/Research", "{max: {pids: 64}}"), 0); err != nil {
		t.Fatal(err)
	}
	if p, err := e.svc.Get(ctx, Subject{SubjectCategory, " RESEARCH"}); err != nil || p.Spec.Max.PIDs == nil || *p.Spec.Max.PIDs != 64 {
		t.Errorf("category get: %+v %v", p, err)
	}
	checkAudit(t, e.audit(t, 0), []string{"alice policy.put - outcome=refused", "alice policy.create category/research version=1"})
	if ps, _ := e.svc.List(ctx); len(ps) != 1 || ps[0].UpdatedBy != "alice" {
		t.Errorf("list %+v", ps)
	}
}

func TestStoreFile(t *testing.T) {
	// The schema registers and migrates beside the store's own.
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := New(ctx, Options{Store: st, Profile: "bogus"}); err == nil {
		t.Error("a bogus profile was accepted")
	}
	s, err := New(ctx, Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := s.Tenants(ctx); err != nil || len(ts) != 1 || ts[0].Name != DefaultTenant {
		t.Errorf("tenants of a new database: %+v %v", ts, err)
	}
}
