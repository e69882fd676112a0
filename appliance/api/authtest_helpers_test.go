package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/agents"
	"github.com/omertaos/omertaos/appliance/agents/catalog"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/auth"
	"github.com/omertaos/omertaos/appliance/policy"
	"github.com/omertaos/omertaos/appliance/store"
)

// The tests of authentication talk to the API over a real unix socket, as
// root and as another uid: a connection made from a thread whose
// effective uid was changed carries that uid in SO_PEERCRED, which is how
// omertad tells the console from the CLI.

const (
	consoleUID = 64000 // a uid with no account: the kernel does not care
	consoleGID = 64001
	setupToken = "abcdefghijklmnopqrstuvwxyz234567"
	adminPass  = "quiet lantern under 7 hills"
	userPass   = "a kettle of wren feathers"
)

// needRoot skips a test that must change uid to connect as another user.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("connecting as another uid needs root (CI runs as root)")
	}
}

// dialAs connects to sock from a thread whose effective uid and gid are
// uid and gid. The goroutine keeps its thread locked and ends, so the
// runtime throws the thread away instead of reusing it with those ids.
func dialAs(uid, gid int, sock string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Raw syscalls: syscall.Setresuid would change every thread.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(gid), ^uintptr(0)); e != 0 {
			ch <- result{err: fmt.Errorf("setresgid: %w", e)}
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
			ch <- result{err: fmt.Errorf("setresuid: %w", e)}
			return
		}
		c, err := net.Dial("unix", sock)
		ch <- result{c: c, err: err}
	}()
	r := <-ch
	return r.c, r.err
}

// peerClient sends requests as one uid, each on a fresh connection.
type peerClient struct {
	t    *testing.T
	sock string
	uid  int // 0: as this (root) process
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body)) }

func (a answer) decode(t *testing.T, into any) {
	t.Helper()
	if err := json.Unmarshal(a.body, into); err != nil {
		t.Fatalf("decoding %s: %v", a, err)
	}
}

// do sends method path with headers h and body (JSON unless a string).
func (pc peerClient) do(method, path string, h map[string]string, body any) answer {
	pc.t.Helper()
	var conn net.Conn
	var err error
	if pc.uid == 0 {
		conn, err = net.Dial("unix", pc.sock)
	} else {
		conn, err = dialAs(pc.uid, consoleGID, pc.sock)
	}
	if err != nil {
		pc.t.Fatalf("connecting as uid %d: %v", pc.uid, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			pc.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://omertad"+path, rd)
	if err != nil {
		pc.t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	if err := req.Write(conn); err != nil {
		pc.t.Fatalf("%s %s: %v", method, path, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		pc.t.Fatalf("%s %s: %v", method, path, err)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// A stream never ends, and closing its body would read it to
		// the end: hang up instead.
		conn.Close()
		return answer{status: resp.StatusCode, header: resp.Header}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return answer{status: resp.StatusCode, header: resp.Header, body: data}
}

// authEnv is an API with a real auth domain on a socket that another uid
// may connect to.
type authEnv struct {
	t     *testing.T
	st    *store.Store
	auth  *auth.Service
	srv   *Server
	sock  string
	root  peerClient
	other peerClient // the console's uid
}

type envOption func(*auth.Options, *Deps)

// newAuthEnv starts the API with an auth domain whose setup token is
// setupToken. More deps come from opts.
func newAuthEnv(t *testing.T, opts ...envOption) *authEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "apiauth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The socket's directory and the socket itself must let the other
	// uid in, as daemon.socket_group does on the appliance.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"), store.WithSchemas(auth.Schema, agents.Schema, catalog.Schema, policy.Schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ao := auth.Options{Store: st, RedeemSetupToken: redeemOnce(setupToken)}
	d := Deps{Store: st}
	for _, o := range opts {
		o(&ao, &d)
	}
	svc, err := auth.New(ao)
	if err != nil {
		t.Fatal(err)
	}
	d.Auth = svc
	e := &authEnv{t: t, st: st, auth: svc}
	e.srv, e.sock = startServer(t, dir, d)
	e.root = peerClient{t: t, sock: e.sock}
	e.other = peerClient{t: t, sock: e.sock, uid: consoleUID}
	return e
}

func startServer(t *testing.T, dir string, d Deps) (*Server, string) {
	t.Helper()
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := New(d)
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, sock
}

// redeemOnce is a setup token redeemer that accepts token once.
func redeemOnce(token string) func(string, time.Time) error {
	used := false
	return func(got string, _ time.Time) error {
		switch {
		case got != token:
			return fmt.Errorf("%w: does not match", auth.ErrSetupToken)
		case used:
			return fmt.Errorf("%w: used", auth.ErrSetupToken)
		}
		used = true
		return nil
	}
}

// login is a console session: its headers, for a read or a change.
type login struct {
	apitype.Session
}

func (l login) read() map[string]string { return map[string]string{apitype.HeaderSession: l.SessionID} }

func (l login) change() map[string]string {
	return map[string]string{apitype.HeaderSession: l.SessionID, apitype.HeaderCSRF: l.CSRFToken}
}

func bearer(secret string) map[string]string {
	return map[string]string{apitype.HeaderAuthorization: "Bearer " + secret}
}

// setup makes the first admin through the API, as the console does.
func (e *authEnv) setup() login {
	e.t.Helper()
	a := e.other.do("POST", "/api/v1/setup", nil, apitype.SetupRequest{Token: setupToken, Username: "admin", Password: adminPass})
	if a.status != http.StatusCreated {
		e.t.Fatalf("setup = %s", a)
	}
	var s login
	a.decode(e.t, &s.Session)
	return s
}

// user creates a user with a password and logs it in.
func (e *authEnv) user(admin login, name string, role auth.Role) login {
	e.t.Helper()
	a := e.other.do("POST", "/api/v1/users", admin.change(), apitype.UserCreate{Username: name, Role: string(role), Password: userPass})
	if a.status != http.StatusCreated {
		e.t.Fatalf("creating %s = %s", name, a)
	}
	return e.login(name, userPass)
}

func (e *authEnv) login(name, password string) login {
	e.t.Helper()
	a := e.other.do("POST", "/api/v1/login", nil, apitype.LoginRequest{Username: name, Password: password})
	if a.status != http.StatusOK {
		e.t.Fatalf("login %s = %s", name, a)
	}
	var s login
	a.decode(e.t, &s.Session)
	return s
}

// token issues an API token of role and returns its secret.
func (e *authEnv) token(admin login, name string, role auth.Role) string {
	e.t.Helper()
	return e.issue(admin, name, role).Secret
}

// tokenID issues an API token of role and returns its id.
func (e *authEnv) tokenID(admin login, name string, role auth.Role) int64 {
	e.t.Helper()
	return e.issue(admin, name, role).Token.ID
}

func (e *authEnv) issue(admin login, name string, role auth.Role) apitype.TokenIssued {
	e.t.Helper()
	a := e.other.do("POST", "/api/v1/tokens", admin.change(), apitype.TokenCreate{Name: name, Role: string(role)})
	if a.status != http.StatusCreated {
		e.t.Fatalf("token %s = %s", name, a)
	}
	var it apitype.TokenIssued
	a.decode(e.t, &it)
	return it
}

// lastAudit returns the newest audit record with action (and target,
// when one is given).
func (e *authEnv) lastAudit(action string, target ...string) (store.AuditRecord, bool) {
	e.t.Helper()
	recs, err := e.st.AuditLog(context.Background(), 0, 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Action == action && (len(target) == 0 || recs[i].Target == target[0]) {
			return recs[i], true
		}
	}
	return store.AuditRecord{}, false
}

func auditDetail(t *testing.T, r store.AuditRecord) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(r.Detail, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func errorOf(a answer) string {
	var e apitype.Error
	if json.Unmarshal(a.body, &e) != nil {
		return ""
	}
	return e.Error
}

func bytesContains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

func strconvI(n int64) string { return fmt.Sprint(n) }

// rawResponse sends req as root and returns the response and its body.
func rawResponse(t *testing.T, sock, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, req)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp, string(body)
}
