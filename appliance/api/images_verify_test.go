package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/runtime"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/policy"
)

// fakeArchives is an ArchiveVerifier that answers check and err for
// every archive and records the paths it was asked about.
type fakeArchives struct {
	mu    sync.Mutex
	paths []string
	check ArchiveCheck
	err   error
}

func (f *fakeArchives) CheckArchive(_ context.Context, path string) (ArchiveCheck, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths = append(f.paths, path)
	return f.check, f.err
}

const (
	verifyKeyID    = "0242DB770DE91C78"
	verifyRegistry = "/usr/share/omerta"
	pinnedDigest   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// importDetail is the part of an image import's audit record the
// verification adds.
type importDetail struct {
	Signer       *string  `json:"signer"`
	Registry     string   `json:"registry"`
	PinnedDigest string   `json:"pinned_digest"`
	Warnings     []string `json:"warnings"`
	Error        string   `json:"error"`
}

func newVerifiedImportEnv(t *testing.T) (*agentsEnv, *fakeArchives) {
	t.Helper()
	v := &fakeArchives{}
	e := newAgentsEnv(t, func(d *AgentsDeps) { d.Archives = v })
	e.images.result = []runtime.Image{{Name: "omerta.test/web:1", Digest: pinnedDigest, Manifest: pinnedDigest}}
	return e, v
}

// lastImportAudit is the newest audit record, which must be the import
// (or its refusal) of path.
func lastImportAudit(t *testing.T, e *agentsEnv, action, path string) importDetail {
	t.Helper()
	recs, err := e.st.AuditLog(context.Background(), 0, 1000)
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit log: %d records, %v", len(recs), err)
	}
	r := recs[len(recs)-1]
	if r.Action != action || r.Target != path || r.Actor != rootActor {
		t.Fatalf("newest audit record: %s %s %s; want %s %s %s", r.Actor, r.Action, r.Target, rootActor, action, path)
	}
	var d importDetail
	if err := json.Unmarshal(r.Detail, &d); err != nil {
		t.Fatalf("audit detail %s: %v", r.Detail, err)
	}
	return d
}

// TestImageImportRefusedByVerifier: an archive the verifier refuses (a
// registry's refusal is a *policy.DeniedError) is answered 403 with the
// reason, audited as image.import.refused with the reason, and never
// reaches the runtime.
func TestImageImportRefusedByVerifier(t *testing.T) {
	e, v := newVerifiedImportEnv(t)
	reason := `image archive "/srv/evil.oci.tar" is not signed by a trusted key, and the enterprise profile accepts only signed ones`
	v.err = &policy.DeniedError{Decision: policy.Decision{Rule: "registry", Reason: reason,
		Denials: []policy.Denial{{Rule: "registry", Reason: reason}}}}
	_, err := e.c.ImportImage(context.Background(), apitype.ImageImport{Path: "/srv/evil.oci.tar"})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, reason) || !strings.Contains(ae.Message, "registry") {
		t.Fatalf("a refused archive: %v; want 403 with the reason", err)
	}
	if len(v.paths) != 1 || v.paths[0] != "/srv/evil.oci.tar" {
		t.Errorf("verifier asked about %q", v.paths)
	}
	if len(e.images.paths) != 0 {
		t.Errorf("the runtime imported %q after the refusal", e.images.paths)
	}
	d := lastImportAudit(t, e, "image.import.refused", "/srv/evil.oci.tar")
	if !strings.Contains(d.Error, reason) || d.Signer == nil || *d.Signer != "" {
		t.Errorf("audit detail %+v; want the reason and no signer", d)
	}
	// The 403 body is the decision, as admission's refusals are.
	code, body := raw(t, e.sock, "POST /api/v1/images/import HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n"+`{"path":"/srv/evil2.oci.tar"}`)
	var denied apitype.Denied
	if code != 403 || json.Unmarshal([]byte(body), &denied) != nil || denied.Decision.Rule != "registry" ||
		denied.Decision.Reason != reason {
		t.Errorf("raw refusal = %d %s", code, body)
	}
}

// TestImageImportSigned: an archive a signed registry vouches for is
// imported with the digest that registry pins (ExpectDigest), whether the
// request gave the same digest or none; the 201 answer and the audit
// record name the signer's key ID.
func TestImageImportSigned(t *testing.T) {
	e, v := newVerifiedImportEnv(t)
	v.check = ArchiveCheck{Digest: pinnedDigest, Signer: verifyKeyID, Registry: verifyRegistry}
	ctx := context.Background()
	for i, req := range []apitype.ImageImport{{Path: "/srv/web.oci.tar"}, {Path: "/srv/web.oci.tar", Digest: pinnedDigest}} {
		out, err := e.c.ImportImage(ctx, req)
		if err != nil || out.Signer != verifyKeyID || len(out.Warnings) != 0 || len(out.Images) != 1 {
			t.Fatalf("ImportImage(%+v) = %+v, %v; want 201 signed by %s", req, out, err, verifyKeyID)
		}
		if got := e.images.want[i]; got != pinnedDigest {
			t.Errorf("import %d required digest %q; want the registry's %s", i, got, pinnedDigest)
		}
		d := lastImportAudit(t, e, "image.import", "/srv/web.oci.tar")
		if d.Signer == nil || *d.Signer != verifyKeyID || d.Registry != verifyRegistry || d.PinnedDigest != pinnedDigest {
			t.Errorf("audit detail %+v; want the signer, the registry and its digest", d)
		}
	}
}

// TestImageImportUnsignedWarns: an archive allowed unsigned (the user
// profile) is imported with the request's digest, if any, and the 201
// answer and the audit record carry the warning, with no signer.
func TestImageImportUnsignedWarns(t *testing.T) {
	e, v := newVerifiedImportEnv(t)
	warning := `image archive "/srv/web.oci.tar" is not signed by a trusted key; allowed by the user profile`
	v.check = ArchiveCheck{Warnings: []string{warning}}
	out, err := e.c.ImportImage(context.Background(), apitype.ImageImport{Path: "/srv/web.oci.tar", Digest: testDigest})
	if err != nil || out.Signer != "" || len(out.Warnings) != 1 || out.Warnings[0] != warning {
		t.Fatalf("ImportImage = %+v, %v; want 201 with the warning", out, err)
	}
	if len(e.images.want) != 1 || e.images.want[0] != testDigest {
		t.Errorf("the import required %q; want the request's %s", e.images.want, testDigest)
	}
	d := lastImportAudit(t, e, "image.import", "/srv/web.oci.tar")
	if d.Signer == nil || *d.Signer != "" || len(d.Warnings) != 1 || d.Warnings[0] != warning {
		t.Errorf("audit detail %+v; want the warning and an empty signer", d)
	}
}

// TestImageImportDigestConflict: a request whose digest is not the one
// the vouching registry pins is refused with 409 naming both, audited,
// and not imported.
func TestImageImportDigestConflict(t *testing.T) {
	e, v := newVerifiedImportEnv(t)
	v.check = ArchiveCheck{Digest: pinnedDigest, Signer: verifyKeyID, Registry: verifyRegistry}
	_, err := e.c.ImportImage(context.Background(), apitype.ImageImport{Path: "/srv/web.oci.tar", Digest: testDigest})
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 409 || !strings.Contains(ae.Message, pinnedDigest) || !strings.Contains(ae.Message, testDigest) {
		t.Fatalf("a conflicting digest: %v; want 409 naming both digests", err)
	}
	if len(e.images.paths) != 0 {
		t.Errorf("the runtime imported %q", e.images.paths)
	}
	d := lastImportAudit(t, e, "image.import.refused", "/srv/web.oci.tar")
	if !strings.Contains(d.Error, pinnedDigest) || d.Signer == nil || *d.Signer != verifyKeyID {
		t.Errorf("audit detail %+v", d)
	}
}

// TestImageImportUnverified: without an ArchiveVerifier the route imports
// as it always did, and its records and answers name no signer.
func TestImageImportUnverified(t *testing.T) {
	e := newAgentsEnv(t)
	e.images.result = []runtime.Image{{Name: "omerta.test/web:1", Digest: testDigest}}
	out, err := e.c.ImportImage(context.Background(), apitype.ImageImport{Path: "/srv/web.oci.tar"})
	if err != nil || out.Signer != "" || out.Warnings != nil || e.images.want[0] != "" {
		t.Fatalf("ImportImage = %+v, %v; required %q", out, err, e.images.want)
	}
	if d := lastImportAudit(t, e, "image.import", "/srv/web.oci.tar"); d.Signer != nil {
		t.Errorf("an unverified import's audit names a signer: %+v", d)
	}
}
