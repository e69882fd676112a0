package agents

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// TestSecretsAreNeverShown deploys and patches an agent with a secret and
// looks for the secret's value in everything a person or a client can
// read: the API's answers, the audit log, omertad's log, the container's
// environment and arguments, the events, and the shown tables.
func TestSecretsAreNeverShown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sub := e.s.Bus().Subscribe(ctx, Filter{})
	e.deploy(t, "")
	if _, err := e.s.Patch(ctx, "tool", PatchRequest{Config: map[string]any{"mode": "slow"}, Actor: testActor}); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t)
	var seen []string
	add := func(what string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, what+": "+string(b))
	}
	a := e.get(t, "tool")
	list, _ := e.s.List(ctx)
	add("get", a)
	add("list", list)
	add("audit", e.audit(t))
	seen = append(seen, "daemon log: "+e.logs.String())
	sp, _ := e.rt.Spec("tool-g2")
	add("container env and args", map[string]any{"env": sp.Env, "command": sp.Command, "args": sp.Args, "labels": sp.Labels})
	for len(sub.C) > 0 {
		add("event", <-sub.C)
	}
	rows, err := e.st.Read().Query("SELECT manifest || config FROM agent_specs")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		seen = append(seen, "agent_specs: "+s)
	}
	rows.Close()
	for _, s := range seen {
		if strings.Contains(s, testSecret) {
			t.Errorf("the secret shows in %.300s", s)
		}
	}
	if a.Config["api_key"] != manifest.Redacted || len(a.SecretKeys) != 1 || a.SecretKeys[0] != "/api_key" {
		t.Errorf("the secret is not shown as set: config %v, keys %v", a.Config, a.SecretKeys)
	}
	if a.Manifest.Spec.Config["api_key"] != manifest.Redacted {
		t.Errorf("the manifest's config shows %v", a.Manifest.Spec.Config["api_key"])
	}
	secrets, err := loadSecrets(ctx, e.st.Read(), "tool", a.Generation)
	if err != nil || secrets["/api_key"] != testSecret {
		t.Errorf("the secret was not kept for the agent: %v %v", secrets, err)
	}
}

// TestRefusalDoesNotRepeatTheSecret: a secret that fails its schema's
// pattern is refused without the validator's message quoting it.
func TestRefusalDoesNotRepeatTheSecret(t *testing.T) {
	e := newEnv(t)
	bad := "has spaces " + testSecret
	_, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), Actor: testActor,
		Secrets: map[string]any{"api_key": bad}})
	var ie *InvalidError
	if !errors.As(err, &ie) || !hasPath(ie.Problems, "spec.config.api_key") {
		t.Fatalf("deploy: %v", err)
	}
	if strings.Contains(err.Error(), testSecret) || strings.Contains(e.logs.String(), testSecret) {
		t.Errorf("the refusal repeats the secret: %v", err)
	}
}

// TestSecretGivenAsConfigIsStillSecret: the schema decides, not the
// field the client used.
func TestSecretGivenAsConfigIsStillSecret(t *testing.T) {
	e := newEnv(t)
	a, err := e.s.Deploy(context.Background(), DeployRequest{Manifest: parseManifest(t, toolYAML), Actor: testActor,
		Config: map[string]any{"api_key": testSecret}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(a)
	if strings.Contains(string(b), testSecret) {
		t.Errorf("a secret given in config is shown: %s", b)
	}
}

func TestPatchRemovesASecret(t *testing.T) {
	e := newEnv(t)
	e.deploy(t, "")
	a, err := e.s.Patch(context.Background(), "tool", PatchRequest{Secrets: map[string]any{"api_key": nil}, Actor: testActor})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.SecretKeys) != 0 || a.Config["api_key"] != nil {
		t.Errorf("after removing the secret: keys %v config %v", a.SecretKeys, a.Config)
	}
}
