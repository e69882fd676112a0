package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// The sample agent deployed on the booted image: its catalog entry and
// image ship in the image (/usr/share/omerta), so this works offline.
const (
	e2eAdmin    = "e2e-admin"
	e2eToken    = "e2e" // the admin's API token, by name
	sampleEntry = "sample-tool"
	sampleImage = "omertaos.local/agents/tool:0.1.0"
	sampleTask  = `{"op":"extract","text":"Mail ops@example.com about the 2026-12-01 release"}`
)

// consoleURL is the console as the host reaches it: QEMU forwards a
// loopback port to the guest's 443, the address the banner names.
func consoleURL(v *vm) string { return fmt.Sprintf("https://127.0.0.1:%d", v.httpsPort) }

// mainConsole: the console answers on HTTPS with the certificate whose
// fingerprint the banner printed, refuses a client pinned to any other,
// and takes the printed token exactly once. It returns a client carrying
// the first admin's session, or nil when the console could not be set up.
func (r *run) mainConsole(ctx context.Context, sc string, v *vm, b banner) *apiclient.Client {
	c, err := apiclient.NewRemote(consoleURL(v), apiclient.WithFingerprint(b.TLS))
	if !r.check(sc, "console client pinned to the printed fingerprint", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	st, err := waitConsole(ctx, c)
	if !r.check(sc, "console answers on HTTPS with the printed certificate", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	r.res.PowerOnToConsoleReadySecs = time.Since(v.start).Seconds()
	r.check(sc, "setup is open before the token is used", !st.Done, "done %v", st.Done)
	r.consolePinRefused(ctx, sc, v)
	return r.consoleSetup(ctx, sc, v, b)
}

// waitConsole asks the console for its setup state until it answers, for
// up to 3 minutes: the console is socket-activated and forwards to omertad,
// which may still be starting. Console ready is the moment this returns
// without an error (the e2e's figure and make e2e-bench's).
func waitConsole(ctx context.Context, c *apiclient.Client) (apitype.SetupState, error) {
	var (
		st  apitype.SetupState
		err error
	)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st, err = c.SetupState(cctx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return st, err
		}
		time.Sleep(time.Second)
	}
}

// consolePinRefused: a client pinned to another certificate must not get
// an answer, or the printed fingerprint would prove nothing.
func (r *run) consolePinRefused(ctx context.Context, sc string, v *vm) {
	wrong, err := apiclient.NewRemote(consoleURL(v), apiclient.WithFingerprint(strings.Repeat("00", 32)))
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = wrong.SetupState(cctx)
		cancel()
	}
	r.check(sc, "console refuses a client pinned to another certificate", errors.Is(err, apiclient.ErrFingerprint), "%v", errOrNil(err))
}

// consoleSetup redeems the token the way a person does, in chromium
// through the console's setup page (browserSetup); the test's own form
// client then signs in as that admin. Should the browser fail, the form
// client sets up instead (failing the browser's check all the same), so
// that the checks after it still run. A second use of the token is
// refused. The admin then issues an API token, and the client returned
// carries it: the way the CLI and automation reach the console.
func (r *run) consoleSetup(ctx context.Context, sc string, v *vm, b banner) *apiclient.Client {
	password, err := randomPassword()
	if err != nil {
		r.check(sc, "setup with the printed token", false, "%v", err)
		return nil
	}
	web, err := newConsoleBrowser(consoleURL(v), b.TLS)
	if err != nil {
		r.check(sc, "setup with the printed token", false, "%v", err)
		return nil
	}
	browserOK := r.browserSetup(ctx, sc, v, web, b, password)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if browserOK {
		st, loc, err := web.login(cctx, e2eAdmin, password)
		if !r.check(sc, "the first admin signs in with the password set in the browser", err == nil && st == http.StatusSeeOther && loc == "/" && web.session() != "",
			"status %d to %q, session cookie %v%s", st, loc, web.session() != "", errSuffix(err)) {
			return nil
		}
	} else if !r.formSetup(cctx, sc, web, b, password) {
		return nil
	}
	return r.adminToken(cctx, sc, v, b, web, password)
}

// formAdmin sets the console up with the test's form client alone (no
// browser: the main scenario's setup tests that) and returns a client
// carrying an admin API token, or nil.
func (r *run) formAdmin(ctx context.Context, sc string, v *vm, b banner) *apiclient.Client {
	c, err := apiclient.NewRemote(consoleURL(v), apiclient.WithFingerprint(b.TLS))
	if err == nil {
		_, err = waitConsole(ctx, c)
	}
	if !r.check(sc, "console answers on HTTPS with the printed certificate", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	password, err := randomPassword()
	web, werr := newConsoleBrowser(consoleURL(v), b.TLS)
	if err = errors.Join(err, werr); err != nil {
		r.check(sc, "setup with the printed token", false, "%v", err)
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !r.formSetup(cctx, sc, web, b, password) {
		return nil
	}
	return r.adminToken(cctx, sc, v, b, web, password)
}

// adminToken: with the first admin signed in on web, the token no longer
// sets anything up, and the admin issues an API token; the client returned
// carries it, as the CLI and automation reach the console.
func (r *run) adminToken(cctx context.Context, sc string, v *vm, b banner, web *consoleBrowser, password string) *apiclient.Client {
	fresh, _ := newConsoleBrowser(consoleURL(v), b.TLS)
	st, _, err := fresh.setup(cctx, b.Token, "second-admin", password)
	r.check(sc, "the token works once: setup is gone", err == nil && st != http.StatusSeeOther, "status %d%s", st, errSuffix(err))
	var who apitype.Whoami
	err = web.json(cctx, http.MethodGet, "/api/v1/whoami", "", nil, &who)
	r.check(sc, "the session is the first admin's", err == nil && who.User == e2eAdmin && who.Role == "admin", "user %q role %q%s", who.User, who.Role, errSuffix(err))
	var tok apitype.TokenIssued
	err = web.json(cctx, http.MethodPost, "/api/v1/tokens", who.CSRFToken, apitype.TokenCreate{Name: e2eToken, Role: "admin"}, &tok)
	if !r.check(sc, "the admin issues an API token through the console", err == nil && tok.Secret != "", "%v", errOrNil(err)) {
		return nil
	}
	// Each call's context bounds it (the console waits minutes for a
	// deploy under emulation, and a task is asked to wait two): the
	// client's own 30 s default would cut those off first.
	c, err := apiclient.NewRemote(consoleURL(v), apiclient.WithFingerprint(b.TLS), apiclient.WithTimeout(10*time.Minute))
	if err != nil {
		return nil
	}
	admin := c.As(apiclient.Credentials{Bearer: tok.Secret})
	rep, err := admin.Report(cctx)
	r.check(sc, "the console serves the verified first-boot report (API token)", err == nil && rep.Verification.Status == apitype.ReportVerified,
		"status %q%s", rep.Verification.Status, errSuffix(err))
	return admin
}

// formSetup posts the setup form: a wrong token is refused, the right one
// makes the first admin and signs them in.
func (r *run) formSetup(ctx context.Context, sc string, web *consoleBrowser, b banner, password string) bool {
	st, _, err := web.setup(ctx, strings.Repeat("x", len(b.Token)), e2eAdmin, password)
	r.check(sc, "setup page refuses a wrong token", err == nil && st >= 400 && st < 500, "status %d%s", st, errSuffix(err))
	st, loc, err := web.setup(ctx, b.Token, e2eAdmin, password)
	return r.check(sc, "setup page takes the printed token and signs the first admin in", err == nil && st == http.StatusSeeOther && loc == "/" && web.session() != "",
		"status %d to %q, session cookie %v%s", st, loc, web.session() != "", errSuffix(err))
}

// mainAgents deploys the shipped sample agent through the console, waits
// for it to run, runs a task and reads its logs: containerd, the bundled
// image import and the agents service on the booted image, offline.
func (r *run) mainAgents(ctx context.Context, sc string, admin *apiclient.Client) (deployToRunningSecs float64) {
	if admin == nil {
		r.check(sc, "sample agent deployed through the console", false, "no admin session (setup failed)")
		return 0
	}
	actx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	if !r.waitBundled(actx, sc, admin) {
		return 0
	}
	start := time.Now()
	_, err := admin.DeployAgent(actx, apitype.AgentDeploy{Entry: sampleEntry})
	if !r.check(sc, "sample agent deployed through the console", err == nil, "%v after %.1fs", errOrNil(err), time.Since(start).Seconds()) {
		// Whether omertad finished the deploy anyway tells a slow
		// answer from a failed deploy.
		a, gerr := admin.Agent(actx, sampleEntry)
		r.note("after the failed deploy, the agent: state %q%s", a.Status.State, errSuffix(gerr))
		return 0
	}
	a, err := waitAgentState(actx, admin, sampleEntry, "running")
	r.check(sc, "sample agent running", err == nil, "state %q after %.1fs%s", a.Status.State, time.Since(start).Seconds(), errSuffix(err))
	if err != nil {
		return 0
	}
	deployToRunningSecs = time.Since(start).Seconds()
	t, err := admin.RunTask(actx, sampleEntry, apitype.TaskCreate{Input: json.RawMessage(sampleTask)}, 2*time.Minute)
	r.check(sc, "sample agent answers a task", err == nil && t.State == apitype.TaskSucceeded && strings.Contains(string(t.Output), "ops@example.com"),
		"%v state %q output %s", errOrNil(err), t.State, oneLine(string(t.Output)))
	logs, err := admin.AgentLogs(actx, sampleEntry, 100)
	r.check(sc, "sample agent's logs are read through the console", err == nil && len(logs) > 0, "%v, %d bytes", errOrNil(err), len(logs))
	recs, err := admin.Audit(actx, 0, 1000)
	found, detail := false, ""
	for _, rec := range recs {
		// The deploy was made with the admin's API token: the actor is
		// the token by name, with its role and the caller's address.
		if rec.Action == "agents.deploy" && rec.Target == sampleEntry && strings.HasPrefix(rec.Actor, "token:"+e2eToken+" ") {
			found, detail = true, string(rec.Detail)
		}
	}
	r.check(sc, "the deploy is in the audit log under the API token that made it", err == nil && found, "%v, %d records", errOrNil(err), len(recs))
	// The image's own registry vouches for the shipped image: admission
	// saw it signed, so its decision carries no unsigned-image warning.
	r.check(sc, "the shipped agent's image was admitted as signed by the image's registry", found && !strings.Contains(detail, "no verified signature"),
		"decision %s", oneLine(detail))
	return deployToRunningSecs
}

// waitBundled waits for omertad to have imported the shipped image
// archives and catalog, which it does in the background at start.
func (r *run) waitBundled(ctx context.Context, sc string, c *apiclient.Client) bool {
	var detail string
	for {
		imgs, ierr := c.Images(ctx)
		cat, cerr := c.Catalog(ctx)
		hasImage, hasEntry := false, false
		for _, i := range imgs.Images {
			hasImage = hasImage || i.Name == sampleImage
		}
		for _, e := range cat.Entries {
			hasEntry = hasEntry || e.ID == sampleEntry
		}
		detail = fmt.Sprintf("image %v, entry %v (%v, %v)", hasImage, hasEntry, errOrNil(ierr), errOrNil(cerr))
		if hasImage && hasEntry {
			return r.check(sc, "shipped catalog and image archives imported offline", true, "%s", detail)
		}
		select {
		case <-ctx.Done():
			return r.check(sc, "shipped catalog and image archives imported offline", false, "%s", detail)
		case <-time.After(2 * time.Second):
		}
	}
}

// waitAgentState polls until the agent reaches want, or a state it cannot
// leave by itself.
func waitAgentState(ctx context.Context, c *apiclient.Client, id, want string) (apitype.Agent, error) {
	for {
		a, err := c.Agent(ctx, id)
		if err == nil && a.Status.State == want {
			return a, nil
		}
		if err == nil && (a.Status.State == "failed" || a.Status.State == "crash-loop") {
			return a, fmt.Errorf("agent is %s: %s", a.Status.State, a.Status.Reason)
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return a, fmt.Errorf("waiting for %s: %w", want, err)
		case <-time.After(time.Second):
		}
	}
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
