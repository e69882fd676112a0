package apiclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// AgentUI sends the path and query as written, the client's credentials
// and a few of the caller's headers, no cookie; the answer comes back as
// it is, whatever its status, and is cut at MaxAgentUIAnswer.
func TestAgentUISendsAndCaps(t *testing.T) {
	var got *http.Request
	var gotBody string
	sock := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		if strings.HasSuffix(r.URL.Path, "/big") {
			chunk := make([]byte, 1<<20)
			for range MaxAgentUIAnswer>>20 + 1 {
				w.Write(chunk)
			}
			return
		}
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	})
	c := New(sock).As(Credentials{Session: "sess", CSRF: "tok"})
	defer c.Close()
	h := http.Header{"Content-Type": {"text/plain"}, "Accept-Language": {"fr"}, "Cookie": {"x=y"}, apitype.HeaderSession: {"forged"}}
	resp, err := c.AgentUI(context.Background(), http.MethodPost, "a b", "/x%2Fy/z", "q=1&r=a%20b", h, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "short and stout" {
		t.Errorf("answer %d %q", resp.StatusCode, body)
	}
	if got.URL.RequestURI() != "/api/v1/agents/a%20b/ui/x%2Fy/z?q=1&r=a%20b" || gotBody != "hi" {
		t.Errorf("omertad got %s %q", got.URL.RequestURI(), gotBody)
	}
	want := map[string]string{"Content-Type": "text/plain", "Accept-Language": "fr", "Cookie": "", apitype.HeaderSession: "sess", apitype.HeaderCSRF: "tok"}
	for k, v := range want {
		if g := got.Header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	resp, err = c.AgentUI(context.Background(), http.MethodGet, "a", "/big", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !errors.Is(err, ErrTooLarge) || n != MaxAgentUIAnswer {
		t.Errorf("a big answer: %d bytes, %v; want ErrTooLarge at %d", n, err, MaxAgentUIAnswer)
	}
}

func TestAgentUIRefusesBadPaths(t *testing.T) {
	c := New("/nonexistent.sock")
	defer c.Close()
	for _, pq := range [][2]string{{"", ""}, {"x", ""}, {"/a b", ""}, {"/a?b", ""}, {"/a#b", ""}, {"/a\r\nb", ""}, {"/a", "b c"}, {"/a", "b#c"}, {"/a", "\x7f"}, {"/%zz", ""}, {"/\xc3\xa9", ""}} {
		if _, err := c.AgentUI(context.Background(), "GET", "a", pq[0], pq[1], nil, nil); !errors.Is(err, ErrBadPath) {
			t.Errorf("AgentUI(%q, %q) = %v, want ErrBadPath", pq[0], pq[1], err)
		}
	}
}

// FuzzCheckUIPath: what checkUIPath accepts is sent as written.
func FuzzCheckUIPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b?c", "/%2e%2e/", "//x", "/a b"} {
		f.Add(s, "q=1")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		if checkUIPath(path, query) != nil {
			return
		}
		pq := "/api/v1/agents/a/ui" + path
		if query != "" {
			pq += "?" + query
		}
		req, err := http.NewRequest("GET", "http://omertad"+pq, nil)
		if err != nil {
			t.Fatalf("accepted %q %q: %v", path, query, err)
		}
		want, _ := url.PathUnescape("/api/v1/agents/a/ui" + path)
		if req.URL.Host != "omertad" || req.URL.Path != want || req.URL.RawQuery != query {
			t.Errorf("accepted %q %q, sent as %s to %s", path, query, req.URL.RequestURI(), req.URL.Host)
		}
	})
}
