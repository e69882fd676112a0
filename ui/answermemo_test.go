package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// reportAPI answers GET /api/v1/report raw with body and status, and
// Report typed, counting the typed calls.
type reportAPI struct {
	API
	status   int
	body     []byte
	typed    int
	forwards int
}

func (r *reportAPI) Forward(_ context.Context, method, pq string, _ http.Header, _ []byte, _ bool) (*http.Response, error) {
	if method != http.MethodGet || pq != "/api/v1/report" {
		return nil, errors.New("unexpected call " + method + " " + pq)
	}
	r.forwards++
	cl := int64(len(r.body))
	if r.forwards%2 == 0 {
		cl = -1 // chunked, no length told
	}
	return &http.Response{StatusCode: r.status, ContentLength: cl, Body: io.NopCloser(bytes.NewReader(r.body))}, nil
}

func (r *reportAPI) Report(context.Context) (apitype.ReportView, error) {
	r.typed++
	if r.status != http.StatusOK {
		return apitype.ReportView{}, &apiclient.Error{Method: "GET", Path: "/api/v1/report", Status: r.status, Message: "no report yet"}
	}
	var v apitype.ReportView
	return v, json.Unmarshal(r.body, &v)
}

func reportAnswer(t *testing.T, host, status string) []byte {
	t.Helper()
	b, err := json.Marshal(apitype.ReportView{Report: json.RawMessage(`{"header":{"hostname":"` + host + `","lynis_audit":{"status":"deferred"}},"addenda":[{"kind":"lynis","status":"done","lynis":{"index":71}}]}`),
		Verification: apitype.ReportVerification{Status: status}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReportMemo: the dashboard's report summary is decoded once per
// distinct answer of omertad's and follows any change of it; refusals
// come back as the typed call's errors.
func TestReportMemo(t *testing.T) {
	ctx := context.Background()
	m := newReportMemo()
	a := &reportAPI{status: http.StatusOK, body: reportAnswer(t, "first", apitype.ReportVerified)}
	s, err := m.get(ctx, a)
	if err != nil || s.Hostname != "first" || s.Verification != apitype.ReportVerified || s.Audit.State != "done" || s.Audit.Index != 71 {
		t.Fatalf("summary = %+v, %v", s, err)
	}
	kept := m.raw
	a.body = bytes.Clone(a.body) // the same bytes in another answer
	if s, err := m.get(ctx, a); err != nil || s.Hostname != "first" || &m.raw[0] != &kept[0] {
		t.Errorf("the same answer again: %+v, %v, decoded again: %v", s, err, &m.raw[0] != &kept[0])
	}
	a.body = reportAnswer(t, "second", apitype.ReportFailed)
	if s, err := m.get(ctx, a); err != nil || s.Hostname != "second" || s.Verification != apitype.ReportFailed {
		t.Errorf("a changed answer: %+v, %v; want it summarized afresh", s, err)
	}
	a.status, a.body = http.StatusNotFound, []byte(`{"error":"no report yet"}`)
	if _, err := m.get(ctx, a); statusOf(err) != http.StatusNotFound || a.typed != 1 {
		t.Errorf("a 404: %v after %d typed calls; want the typed call's 404", err, a.typed)
	}
	a.status, a.body = http.StatusOK, []byte(strings.Repeat("x", 10))
	if _, err := m.get(ctx, a); err == nil {
		t.Error("an answer that is not JSON gave no error")
	}
	if s, err := m.get(ctx, typedAPI{&reportAPI{status: http.StatusOK, body: reportAnswer(t, "typed", "verified")}}); err != nil || s.Hostname != "typed" {
		t.Errorf("a backend without Forward: %+v, %v", s, err)
	}
}

// TestDashboardRawAndTyped: the dashboard shows the same report and probe
// through the client's raw forwarding (the memo) as through its typed
// calls, twice over (the second time from the memo).
func TestDashboardRawAndTyped(t *testing.T) {
	bothModes(t, func(t *testing.T, raw bool) {
		e := newEnvMode(t, Limits{}, raw)
		admin := e.signIn("alice", "admin")
		for range 2 {
			resp, body := e.get("/", &admin)
			wantStatus(t, resp, body, http.StatusOK)
			wantContains(t, body, "omerta-test", `data-testid="report-verification">verified`, "Test CPU 9000", "1 × NVIDIA H200")
		}
	})
}

// TestReadUnlessSame: an answer equal to the kept one is told apart from
// one that differs anywhere, is longer or shorter, with or without its
// length declared; a differing answer comes back whole, and one past the
// limit is refused.
func TestReadUnlessSame(t *testing.T) {
	kept := bytes.Repeat([]byte("0123456789abcdef"), 40<<10/16) // past one read buffer
	edit := func(at int) []byte { b := bytes.Clone(kept); b[at] ^= 1; return b }
	for _, tc := range []struct {
		name string
		body []byte
		same bool
		err  bool
	}{
		{"equal", kept, true, false},
		{"differs at the start", edit(0), false, false},
		{"differs in the third buffer", edit(len(kept) - 1), false, false},
		{"longer", append(bytes.Clone(kept), 'x'), false, false},
		{"shorter", kept[:len(kept)-1], false, false},
		{"empty", []byte{}, false, false},
	} {
		for _, declared := range []bool{true, false} {
			cl := int64(-1)
			if declared {
				cl = int64(len(tc.body))
			}
			resp := &http.Response{ContentLength: cl, Body: io.NopCloser(bytes.NewReader(tc.body))}
			b, same, err := readUnlessSame(resp, kept, 1<<20)
			if err != nil || same != tc.same || (!same && !bytes.Equal(b, tc.body)) || (same && b != nil) {
				t.Errorf("%s (length declared %v): same %v, %d bytes, %v; want same %v", tc.name, declared, same, len(b), err, tc.same)
			}
		}
	}
	big := append(bytes.Clone(kept), 'x')
	if _, _, err := readUnlessSame(&http.Response{ContentLength: -1, Body: io.NopCloser(bytes.NewReader(big))}, kept, int64(len(kept))); err == nil {
		t.Error("an answer past the limit was taken")
	}
	if _, _, err := readUnlessSame(&http.Response{ContentLength: -1, Body: io.NopCloser(bytes.NewReader(big))}, nil, int64(len(kept))); err == nil {
		t.Error("a first answer past the limit was taken")
	}
}
