package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/firstboot"
)

// reportRoot is an appliance root holding the given report and public key
// at first boot's paths; nil leaves a file out.
func reportRoot(t *testing.T, rep, pub []byte) ReportFiles {
	t.Helper()
	dir := t.TempDir()
	for p, data := range map[string][]byte{firstboot.ReportPath: rep, firstboot.SigningPubPath: pub} {
		if data == nil {
			continue
		}
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := rootfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ReportFiles{Root: root, ReportPath: firstboot.ReportPath, PublicKeyPath: firstboot.SigningPubPath}
}

func testdataFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "firstboot", "report", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReportRoutes(t *testing.T) {
	ctx := context.Background()
	good, pub := testdataFile(t, "report.golden.json"), testdataFile(t, "signing.pub")
	tampered := bytes.Replace(good, []byte(`"hostname": "omerta-7f3a2c"`), []byte(`"hostname": "omerta-evil0"`), 1)
	if bytes.Equal(tampered, good) {
		t.Fatal("the golden report no longer has the hostname this test edits")
	}
	tests := []struct {
		name       string
		files      ReportFiles
		status     string
		warn       string // a warning that must be there
		fail       string // the failed check's name, as Error starts
		summary    bool
		reportNull bool
	}{
		{name: "verified", files: reportRoot(t, good, pub), status: apitype.ReportVerified, summary: true},
		{name: "no device key", files: reportRoot(t, good, nil), status: apitype.ReportSelfConsistent, warn: "public key could not be read", summary: true},
		{name: "bad device key", files: reportRoot(t, good, []byte("not a key\n")), status: apitype.ReportSelfConsistent, warn: "public key could not be read", summary: true},
		{name: "tampered", files: reportRoot(t, tampered, pub), status: apitype.ReportFailed, fail: "header hash", summary: true},
		{name: "not JSON", files: reportRoot(t, []byte("\x00garbage"), pub), status: apitype.ReportFailed, fail: "json", reportNull: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(t, Deps{Report: tt.files})
			v, err := s.c.Report(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ver := v.Verification
			if ver.Status != tt.status || (tt.status == apitype.ReportVerified) != ver.Trusted || len(ver.Checks) == 0 {
				t.Errorf("verification = %+v, want status %s", ver, tt.status)
			}
			if tt.warn != "" && (len(ver.Warnings) == 0 || !strings.Contains(ver.Warnings[0], tt.warn)) {
				t.Errorf("warnings = %q, want one about %q", ver.Warnings, tt.warn)
			}
			if !strings.HasPrefix(ver.Error, tt.fail) || (tt.fail == "") != (ver.Error == "") {
				t.Errorf("error = %q, want the %q check", ver.Error, tt.fail)
			}
			if (v.Summary != nil) != tt.summary || (tt.summary && (v.Summary.Records == 0 || v.Summary.Profile != "pro")) {
				t.Errorf("summary = %+v", v.Summary)
			}
			if (string(v.Report) == "null") != tt.reportNull {
				t.Errorf("report = %.60s", v.Report)
			}
			page, err := s.c.ReportHTML(ctx)
			if tt.reportNull {
				if statusOf(err) != http.StatusUnprocessableEntity {
					t.Errorf("HTML of an unreadable report = %v, want 422", err)
				}
				return
			}
			if err != nil || !bytes.Contains(page, []byte("<html")) {
				t.Fatalf("HTML = %.80q, %v", page, err)
			}
		})
	}
	if _, err := serve(t, Deps{Report: reportRoot(t, nil, pub)}).c.Report(ctx); statusOf(err) != http.StatusNotFound {
		t.Errorf("no report yet = %v, want 404", err)
	}
	if _, err := serve(t, Deps{}).c.Report(ctx); statusOf(err) != http.StatusNotFound {
		t.Errorf("no report handle = %v, want 404 (route not served)", err)
	}
}

// TestReportHTMLPolicy: the page may use only its own style block, by
// hash, and no script at all.
func TestReportHTMLPolicy(t *testing.T) {
	s := serve(t, Deps{Report: reportRoot(t, testdataFile(t, "report.golden.json"), testdataFile(t, "signing.pub"))})
	code, raw := rawResponse(t, s.sock, "GET /api/v1/report.html HTTP/1.1\r\nHost: x\r\n\r\n")
	if code.StatusCode != 200 || !strings.HasPrefix(code.Header.Get("Content-Type"), "text/html") || code.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("report.html = %d %v", code.StatusCode, code.Header)
	}
	_, after, _ := strings.Cut(raw, "<style>")
	css, _, ok := strings.Cut(after, "</style>")
	if !ok {
		t.Fatal("the page has no style block")
	}
	sum := sha256.Sum256([]byte(css))
	want := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if csp := code.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, want) || strings.Contains(csp, "script") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP = %q, want it to start %q", csp, want)
	}
	if styleSources([]byte("<p>no style</p>")) != "'none'" {
		t.Error("a page without style blocks must get style-src 'none'")
	}
}

// TestReportVerifiedOnceUntilChanged: GET /report verifies the report once
// and answers from that while the files stay as they were; a changed
// report or key is verified again at the next call, and a touch that
// changes no byte keeps the verification.
func TestReportVerifiedOnceUntilChanged(t *testing.T) {
	ctx := context.Background()
	good, pub := testdataFile(t, "report.golden.json"), testdataFile(t, "signing.pub")
	tampered := bytes.Replace(good, []byte(`"hostname": "omerta-7f3a2c"`), []byte(`"hostname": "omerta-7f3a2d"`), 1)
	files := reportRoot(t, good, pub)
	s, srv := serveWithServer(t, Deps{Report: files})
	reportPath, keyPath := filepath.Join(files.Root.Dir(), files.ReportPath), filepath.Join(files.Root.Dir(), files.PublicKeyPath)
	status := func(want string) *reportEntry {
		t.Helper()
		v, err := s.c.Report(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.Verification.Status != want {
			t.Fatalf("verification %q (%s), want %q", v.Verification.Status, v.Verification.Error, want)
		}
		return cachedReport(srv)
	}
	first := status(apitype.ReportVerified)
	for range 3 {
		if e := status(apitype.ReportVerified); e != first {
			t.Fatal("an unchanged report was verified again")
		}
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(reportPath, later, later); err != nil {
		t.Fatal(err)
	}
	if e := status(apitype.ReportVerified); e != first {
		t.Error("a report touched without a byte changed was verified again")
	}
	// The same size and a new time: only the bytes tell.
	if len(tampered) != len(good) || bytes.Equal(tampered, good) {
		t.Fatal("the tampered report should differ from the golden one in one byte")
	}
	for _, step := range []struct {
		name, path string
		data       []byte
		want       string
	}{
		{"tampered in place", reportPath, tampered, apitype.ReportFailed},
		{"restored", reportPath, good, apitype.ReportVerified},
		{"another device key", keyPath, []byte("not a key\n"), apitype.ReportSelfConsistent},
		{"the key back", keyPath, pub, apitype.ReportVerified},
	} {
		if err := os.WriteFile(step.path, step.data, 0o644); err != nil {
			t.Fatal(err)
		}
		before := cachedReport(srv)
		if e := status(step.want); e == before {
			t.Errorf("%s: answered from the verification made before", step.name)
		}
	}
	if err := os.Remove(reportPath); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Report(ctx); statusOf(err) != http.StatusNotFound {
		t.Errorf("the report removed: %v, want 404", err)
	}
}

func cachedReport(srv *Server) *reportEntry {
	srv.report.mu.Lock()
	defer srv.report.mu.Unlock()
	return srv.report.entry
}
