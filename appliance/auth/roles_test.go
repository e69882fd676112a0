package auth

import (
	"slices"
	"strings"
	"testing"
)

func TestAllowedMatrix(t *testing.T) {
	const A, O, U = "admin", "operator", "auditor"
	want := map[string]string{ // action -> roles allowed, comma-separated
		ActionAgentsRead:   "admin,operator,auditor",
		ActionAgentsWrite:  "admin,operator",
		ActionAgentsLogs:   "admin,operator",
		ActionTasksRead:    "admin,operator",
		ActionTasksWrite:   "admin,operator",
		ActionCatalogRead:  "admin,operator",
		ActionCatalogWrite: "admin,operator",
		ActionSecretsRead:  "admin",
		ActionSecretsWrite: "admin,operator",
		ActionUsersRead:    "admin",
		ActionUsersWrite:   "admin",
		ActionTokensRead:   "admin",
		ActionTokensWrite:  "admin",
		ActionAuditRead:    "admin,auditor",
		ActionReportsRead:  "admin,operator,auditor",
		ActionProbeRead:    "admin,operator,auditor",
		ActionDriftRead:    "admin,operator,auditor",
		ActionEventsRead:   "admin,operator,auditor",
		ActionSelf:         "admin,operator,auditor",
		ActionPolicyRead:   "admin,operator,auditor",
		ActionPolicyWrite:  "admin",
	}
	if got := Actions(); !slices.Equal(got, sortedKeys(want)) {
		t.Fatalf("Actions() = %v, want exactly %v", got, sortedKeys(want))
	}
	for action, roles := range want {
		for _, r := range []Role{A, O, U} {
			if got, exp := Allowed(r, action), slices.Contains(strings.Split(roles, ","), string(r)); got != exp {
				t.Errorf("Allowed(%s, %s) = %v, want %v", r, action, got, exp)
			}
		}
	}
	for _, tc := range []struct {
		role   Role
		action string
	}{
		{A, "agents.delete"}, {A, ""}, {A, "AGENTS.READ"}, {"", ActionAgentsRead}, {"root", ActionAgentsRead}, {"Admin", ActionUsersWrite},
	} {
		if Allowed(tc.role, tc.action) {
			t.Errorf("Allowed(%q, %q) = true; unknown roles and actions must be denied", tc.role, tc.action)
		}
	}
}

// The rules of the issue, stated once more independently of the table.
func TestRoleInvariants(t *testing.T) {
	for _, a := range Actions() {
		if !Allowed(RoleAdmin, a) {
			t.Errorf("admin may not %s; admin does everything", a)
		}
		if Allowed(RoleAuditor, a) && !strings.HasSuffix(a, ".read") && a != ActionSelf {
			t.Errorf("auditor may %s; auditors are read-only", a)
		}
		if Allowed(RoleAuditor, a) && strings.HasPrefix(a, "secrets.") {
			t.Errorf("auditor may %s; auditors see no secrets", a)
		}
		if Allowed(RoleOperator, a) && (strings.HasPrefix(a, "users.") || strings.HasPrefix(a, "tokens.") || a == ActionSecretsRead) {
			t.Errorf("operator may %s", a)
		}
	}
}

func TestPermissionsIsACopy(t *testing.T) {
	p := Permissions()
	p[ActionUsersWrite] = append(p[ActionUsersWrite], RoleAuditor)
	p["new.action"] = []Role{RoleAuditor}
	if Allowed(RoleAuditor, ActionUsersWrite) || Allowed(RoleAuditor, "new.action") {
		t.Fatal("changing Permissions()'s result changed the policy")
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range Roles() {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Admin", "root", "admin "} {
		_, err := ParseRole(s)
		wantInvalidNoFatal(t, err, "role")
	}
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
