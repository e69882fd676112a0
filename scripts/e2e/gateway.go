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

// The model gateway on the image: the shipped echo model (a gateway-mode
// agent, the backend the image's configuration routes local-echo to) and
// a gateway-mode client (scripts/gateway-client.yaml, imported through
// the console) whose task posts a chat completion to 10.88.0.1:8080. The
// client reaches the gateway only through its veth on omerta0, past first
// boot's firewall and omertad's rules, and holds no key.
const (
	echoEntry     = "local-echo-model"
	clientEntry   = "gateway-client"
	gatewayPrompt = "hello from an agent in gateway mode"
)

func gatewayRequest() json.RawMessage {
	return json.RawMessage(`{"model":"local-echo","messages":[{"role":"user","content":"` + gatewayPrompt + `"}]}`)
}

// mainGateway deploys both agents and has the client call the model
// through the gateway, on the reboot scenario's guest (away from the main
// scenario's audit, see rebootScenario). Both stay running: the reboot
// checks that they come back and that the call still goes through
// (rebootAgents).
func (r *run) mainGateway(ctx context.Context, sc string, admin *apiclient.Client) {
	if admin == nil {
		r.check(sc, "gateway-mode agents deployed", false, "no admin session (setup failed)")
		return
	}
	actx, cancel := context.WithTimeout(ctx, 8*time.Minute)
	defer cancel()
	r.gatewayModels(actx, sc, admin)
	doc, err := os.ReadFile(filepath.Join(r.opts.top, "scripts", clientEntry+".yaml"))
	if err == nil {
		_, err = admin.ImportCatalog(actx, apitype.CatalogImport{Name: clientEntry + ".yaml", Document: string(doc)})
	}
	if !r.check(sc, "gateway client imported into the catalog", err == nil, "%v", errOrNil(err)) {
		return
	}
	start := time.Now()
	for _, id := range []string{echoEntry, clientEntry} {
		_, err := admin.DeployAgent(actx, apitype.AgentDeploy{Entry: id})
		if err == nil {
			var a apitype.Agent
			a, err = waitAgentState(actx, admin, id, "running")
			err = wrapState(err, a)
		}
		if !r.check(sc, fmt.Sprintf("gateway-mode agent %s deployed and running", id), err == nil, "%v after %.1fs", errOrNil(err), time.Since(start).Seconds()) {
			r.gatewayDiagnosis(actx, admin, id)
			return
		}
	}
	r.gatewayCall(actx, sc, admin, "an agent calls the echo model through the model gateway")
}

// gatewayModels: omertad enabled the image's local-echo model because the
// image's own signed registry lists its manifest (scripts/registry.sh).
func (r *run) gatewayModels(ctx context.Context, sc string, admin *apiclient.Client) {
	l, err := admin.Models(ctx)
	var got apitype.ModelStatus
	for _, m := range l.Models {
		if m.Name == "local-echo" {
			got = m
		}
	}
	r.check(sc, "the gateway's local-echo model enabled, its manifest signed by the image's registry key", err == nil && got.Enabled && got.Signed && got.KeyID != "",
		"%v gateway %v, local-echo enabled %v code %q signed %v key %s registry %s", errOrNil(err), l.Gateway, got.Enabled, got.Code, got.Signed,
		got.KeyID, got.Registry)
}

// gatewayCall runs the client's task and checks the echo model's answer.
func (r *run) gatewayCall(ctx context.Context, sc string, admin *apiclient.Client, name string) {
	start := time.Now()
	t, err := admin.RunTask(ctx, clientEntry, apitype.TaskCreate{Input: gatewayRequest()}, 2*time.Minute)
	out := string(t.Output) + t.OutputText
	ok := err == nil && t.State == apitype.TaskSucceeded && strings.Contains(out, gatewayPrompt) && strings.Contains(out, `"usage"`)
	r.check(sc, name, ok, "%v state %q in %.1fs output %s", errOrNil(err), t.State, time.Since(start).Seconds(), firstLines(oneLine(out+" "+t.Error), 3))
	if !ok {
		r.gatewayDiagnosis(ctx, admin, clientEntry)
	}
}

// gatewayDiagnosis notes the agent's state and its last log lines.
func (r *run) gatewayDiagnosis(ctx context.Context, admin *apiclient.Client, id string) {
	a, err := admin.Agent(ctx, id)
	r.note("agent %s: state %q message %q%s", id, a.Status.State, a.Status.Reason, errSuffix(err))
	if logs, err := admin.AgentLogs(ctx, id, 20); err == nil {
		r.note("agent %s's last log lines: %s", id, oneLine(string(logs)))
	}
}

func wrapState(err error, a apitype.Agent) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("state %q (%s): %w", a.Status.State, a.Status.Reason, err)
}
