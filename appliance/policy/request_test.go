package policy

import (
	"os"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
)

// TestRequestFor: what a manifest says becomes the request; the category
// policy and the profile's isolation apply to it.
func TestRequestFor(t *testing.T) {
	data, err := os.ReadFile("testdata/manifest-crm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	r := RequestFor(OpDeploy, "crm-1", "", m, "enterprise")
	if r.Tenant != DefaultTenant || r.Category != "Business / CRM" || r.Isolation != manifest.IsolationSandbox ||
		r.Network != manifest.NetworkNone || r.CPUMillis != 1500 || r.MemoryBytes != gi || r.PIDs != manifest.DefaultPIDs ||
		r.Image.Digest == "" || strings.Join(r.Secrets, ",") != "/crm_api_key" || !r.WantsCloud || r.USDMicrosPerMonth != 25_500_000 {
		t.Fatalf("request %+v", r)
	}
	if u := RequestFor(OpDeploy, "crm-1", "", m, "user"); u.Isolation != manifest.IsolationContainer {
		t.Errorf("user isolation %s", u.Isolation)
	}
	set := NewSet("enterprise", []Policy{pol(t, "category/business / crm", "{secrets: [/other]}")}, nil)
	r.Image.Signer = signerA
	d := Evaluate(set, r)
	if d.Allow || d.Rule != `policy:category/"business / crm"@v1 secrets` {
		t.Errorf("decision %+v", d)
	}
	if !strings.Contains(strings.Join(d.Warnings, " "), "gateway will refuse them") {
		t.Errorf("no warning about the cloud wish: %q", d.Warnings)
	}
}
