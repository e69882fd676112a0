package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// The sandboxed agent: the shipped sample tool's manifest, imported into
// the catalog by an operator under another id with spec.isolation
// sandbox, so that it runs under gVisor (runsc) instead of runc.
const sandboxEntry = "sample-tool-sandbox"

// sandboxManifest is image/catalog/sample-tool.yaml made into the
// sandboxed entry: its id changed and its spec asking for gVisor.
func sandboxManifest(top string) (string, error) {
	data, err := os.ReadFile(filepath.Join(top, "image/catalog", sampleEntry+".yaml"))
	if err != nil {
		return "", err
	}
	doc := string(data)
	for _, edit := range []struct{ old, new string }{
		{"  id: " + sampleEntry + "\n", "  id: " + sandboxEntry + "\n"},
		{"spec:\n", "spec:\n  isolation: sandbox\n"},
	} {
		if strings.Count(doc, edit.old) != 1 {
			return "", fmt.Errorf("%s.yaml: expected one %q to edit", sampleEntry, edit.old)
		}
		doc = strings.Replace(doc, edit.old, edit.new, 1)
	}
	return doc, nil
}

// mainSandbox imports the sandboxed entry through the console, deploys it,
// and checks that it runs under gVisor, answers a task and logs.
func (r *run) mainSandbox(ctx context.Context, sc string, admin *apiclient.Client) {
	if admin == nil {
		r.check(sc, "sandboxed (gVisor) agent deployed", false, "no admin session (setup failed)")
		return
	}
	actx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	doc, err := sandboxManifest(r.opts.top)
	if err == nil {
		_, err = admin.ImportCatalog(actx, apitype.CatalogImport{Name: sandboxEntry + ".yaml", Document: doc})
	}
	if !r.check(sc, "sandboxed entry imported into the catalog", err == nil, "%v", errOrNil(err)) {
		return
	}
	start := time.Now()
	_, err = admin.DeployAgent(actx, apitype.AgentDeploy{Entry: sandboxEntry})
	if !r.check(sc, "sandboxed (gVisor) agent deployed through the console", err == nil, "%v after %.1fs", errOrNil(err), time.Since(start).Seconds()) {
		return
	}
	a, err := waitAgentState(actx, admin, sandboxEntry, "running")
	r.check(sc, "sandboxed agent running under gVisor", err == nil && a.Isolation == "sandbox",
		"state %q isolation %q after %.1fs%s", a.Status.State, a.Isolation, time.Since(start).Seconds(), errSuffix(err))
	if err != nil {
		return
	}
	t, err := admin.RunTask(actx, sandboxEntry, apitype.TaskCreate{Input: json.RawMessage(sampleTask)}, 3*time.Minute)
	r.check(sc, "sandboxed agent answers a task", err == nil && t.State == apitype.TaskSucceeded && strings.Contains(string(t.Output), "ops@example.com"),
		"%v state %q output %s", errOrNil(err), t.State, oneLine(string(t.Output)))
	logs, err := admin.AgentLogs(actx, sandboxEntry, 100)
	r.check(sc, "sandboxed agent's logs are read through the console", err == nil && len(logs) > 0, "%v, %d bytes", errOrNil(err), len(logs))
	// Disabled through the console, so that the reboot checks that a
	// disabled agent stays stopped.
	_, err = admin.AgentAction(actx, sandboxEntry, apiclient.ActionDisable)
	if err == nil {
		a, err = waitAgentState(actx, admin, sandboxEntry, "stopped")
	}
	r.check(sc, "sandboxed agent disabled through the console", err == nil && a.Desired == "disabled", "desired %q state %q%s", a.Desired, a.Status.State, errSuffix(err))
}
