package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// The sample agent deployed on the booted image: its catalog entry and
// image ship in the image (/usr/share/omerta), so this works offline.
const (
	e2eAdmin    = "e2e-admin"
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
	// The console is socket-activated and forwards to omertad, which may
	// still be starting: ask until both answer.
	var st apitype.SetupState
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st, err = c.SetupState(cctx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Second)
	}
	if !r.check(sc, "console answers on HTTPS with the printed certificate", err == nil, "%v", errOrNil(err)) {
		return nil
	}
	r.res.PowerOnToConsoleReadySecs = time.Since(v.start).Seconds()
	r.check(sc, "setup is open before the token is used", !st.Done, "done %v", st.Done)
	r.consolePinRefused(ctx, sc, v)
	return r.consoleSetup(ctx, sc, c, b.Token)
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

// consoleSetup redeems the token: a wrong one is refused, the right one
// makes the first admin, and a second use is refused.
func (r *run) consoleSetup(ctx context.Context, sc string, c *apiclient.Client, token string) *apiclient.Client {
	password, err := randomPassword()
	if err != nil {
		r.check(sc, "setup with the printed token", false, "%v", err)
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = c.Setup(cctx, apitype.SetupRequest{Token: strings.Repeat("x", len(token)), Username: e2eAdmin, Password: password})
	r.check(sc, "setup refuses a wrong token", apiStatus(err) >= 400 && apiStatus(err) < 500, "%v", errOrNil(err))
	sess, err := c.Setup(cctx, apitype.SetupRequest{Token: token, Username: e2eAdmin, Password: password})
	if !r.check(sc, "setup with the printed token makes the first admin", err == nil && sess.Role == "admin", "%v role %q", errOrNil(err), sess.Role) {
		return nil
	}
	_, err = c.Setup(cctx, apitype.SetupRequest{Token: token, Username: "second-admin", Password: password})
	r.check(sc, "the token works once: setup is gone", apiStatus(err) >= 400 && apiStatus(err) < 500, "%v", errOrNil(err))
	admin := c.As(apiclient.Credentials{Session: sess.SessionID, CSRF: sess.CSRFToken})
	who, err := admin.Identity(cctx)
	r.check(sc, "the admin's session is the console's", err == nil && who.User == e2eAdmin && who.Role == "admin", "%v user %q role %q", errOrNil(err), who.User, who.Role)
	rep, err := admin.Report(cctx)
	r.check(sc, "the console serves the verified first-boot report", err == nil && rep.Verification.Status == "VERIFIED", "%v status %q", errOrNil(err), rep.Verification.Status)
	return admin
}

// mainAgents deploys the shipped sample agent through the console, waits
// for it to run, runs a task and reads its logs: containerd, the bundled
// image import and the agents service on the booted image, offline.
func (r *run) mainAgents(ctx context.Context, sc string, admin *apiclient.Client) {
	if admin == nil {
		r.check(sc, "sample agent deployed through the console", false, "no admin session (setup failed)")
		return
	}
	actx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	if !r.waitBundled(actx, sc, admin) {
		return
	}
	start := time.Now()
	_, err := admin.DeployAgent(actx, apitype.AgentDeploy{Entry: sampleEntry})
	if !r.check(sc, "sample agent deployed through the console", err == nil, "%v", errOrNil(err)) {
		return
	}
	a, err := waitAgentState(actx, admin, sampleEntry, "running")
	r.check(sc, "sample agent running", err == nil, "state %q after %.1fs%s", a.Status.State, time.Since(start).Seconds(), errSuffix(err))
	if err != nil {
		return
	}
	r.res.DeployToRunningSecs = time.Since(start).Seconds()
	t, err := admin.RunTask(actx, sampleEntry, apitype.TaskCreate{Input: json.RawMessage(sampleTask)}, 2*time.Minute)
	r.check(sc, "sample agent answers a task", err == nil && t.State == apitype.TaskSucceeded && strings.Contains(string(t.Output), "ops@example.com"),
		"%v state %q output %s", errOrNil(err), t.State, oneLine(string(t.Output)))
	logs, err := admin.AgentLogs(actx, sampleEntry, 100)
	r.check(sc, "sample agent's logs are read through the console", err == nil && len(logs) > 0, "%v, %d bytes", errOrNil(err), len(logs))
	recs, err := admin.Audit(actx, 0, 1000)
	found := false
	for _, rec := range recs {
		if rec.Action == "agents.deploy" && rec.Target == sampleEntry && strings.Contains(rec.Actor, e2eAdmin) {
			found = true
		}
	}
	r.check(sc, "the deploy is in the audit log with the admin's name", err == nil && found, "%v, %d records", errOrNil(err), len(recs))
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

// apiStatus is the HTTP status of an API error, 0 for none or another.
func apiStatus(err error) int {
	var e *apiclient.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
