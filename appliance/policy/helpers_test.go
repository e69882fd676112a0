package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

var ctx = context.Background()

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	signerA = "7A1B2C3D4E5F6071"
	signerB = "0000000000000001"
	gi      = int64(1) << 30
	mi      = int64(1) << 20
)

// baseReq is a request every profile admits with no policy stored (a
// sandboxed, signed agent with modest resources in the default tenant).
func baseReq() Request {
	return Request{
		Op: OpDeploy, Agent: "a1", Tenant: DefaultTenant, Category: "Research",
		Image:     ImageNeed{Ref: "registry.local/agents/a1:1", Digest: digestA, Signer: signerA},
		Isolation: manifest.IsolationSandbox, Network: manifest.NetworkGateway,
		CPUMillis: 1000, MemoryBytes: 512 * mi, PIDs: 512,
	}
}

// pol parses "kind/name" and a YAML flow mapping of rules into a stored
// policy at version 1.
func pol(t testing.TB, subject, spec string) Policy {
	t.Helper()
	kind, name, _ := strings.Cut(subject, "/")
	doc, err := Parse([]byte(fmt.Sprintf("apiVersion: omertaos.dev/v1\nkind: Policy\nsubject: {kind: %s, name: %q}\nspec: %s\n", kind, name, spec)))
	if err != nil {
		t.Fatalf("policy %s: %v", subject, err)
	}
	return Policy{Subject: doc.Subject, Version: 1, Spec: doc.Spec}
}

// ten parses a tenant's quotas (a YAML flow mapping).
func ten(t testing.TB, name, quotas string) Tenant {
	t.Helper()
	doc, err := ParseTenant([]byte(fmt.Sprintf("apiVersion: omertaos.dev/v1\nkind: Tenant\nname: %s\nquotas: %s\n", name, quotas)))
	if err != nil {
		t.Fatalf("tenant %s: %v", name, err)
	}
	return Tenant{Name: doc.Name, Quotas: doc.Quotas}
}

// fakeClock is a settable clock shared by the service and the store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a Service on a real store in a temporary directory, with a
// settable list of running agents.
type env struct {
	st    *store.Store
	svc   *Service
	clock *fakeClock
	mu    sync.Mutex
	run   []Request
}

func newEnv(t *testing.T, profile config.Profile, opts ...func(*Options)) *env {
	t.Helper()
	e := &env{clock: &fakeClock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.WithSchemas(Schema), store.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	o := Options{Store: st, Profile: profile, Now: e.clock.Now, Running: func(context.Context) ([]Request, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return append([]Request(nil), e.run...), nil
	}}
	for _, f := range opts {
		f(&o)
	}
	if e.svc, err = New(ctx, o); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) setRunning(rs ...Request) {
	e.mu.Lock()
	e.run = rs
	e.mu.Unlock()
}

// audit returns the audit records after seq.
func (e *env) audit(t *testing.T, after int64) []store.AuditRecord {
	t.Helper()
	recs, err := e.st.AuditLog(ctx, after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func mustDoc(t *testing.T, subject, spec string) *Document {
	t.Helper()
	p := pol(t, subject, spec)
	return &Document{APIVersion: APIVersion, Kind: KindPolicy, Subject: p.Subject, Spec: p.Spec}
}
