package netpolicy

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func dbManager(t *testing.T, path string, edit ...func(*Config)) *Manager {
	t.Helper()
	cfg := validConfig()
	for _, f := range edit {
		f(&cfg)
	}
	m, err := New(openStore(t, path), cfg, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.openNetwork(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func addAgent(t *testing.T, m *Manager, id string) (agentRow, error) {
	t.Helper()
	var r agentRow
	err := m.st.Write(context.Background(), func(tx *sql.Tx) error {
		var err error
		r, _, err = m.getOrAddAgent(context.Background(), tx, id, "test")
		return err
	})
	return r, err
}

// TestAddressAllocation: addresses are the lowest free ones, survive a
// reopened store, come back when released, and run out with a refusal.
func TestAddressAllocation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	m := dbManager(t, path, func(c *Config) { c.Subnet = netip.MustParsePrefix("10.99.0.0/29") }) // 5 agents
	var marks []uint32
	for i, id := range []string{"a", "b", "c"} {
		r, err := addAgent(t, m, id)
		if err != nil || r.Addr != netip.AddrFrom4([4]byte{10, 99, 0, byte(2 + i)}) || r.Veth != vethName(id) {
			t.Fatalf("%s: %+v, %v", id, r, err)
		}
		marks = append(marks, r.Mark)
	}
	if !slices.IsSorted(marks) || marks[0] == marks[1] {
		t.Errorf("marks %v are not unique", marks)
	}
	if again, err := addAgent(t, m, "a"); err != nil || again.Addr.String() != "10.99.0.2" {
		t.Fatalf("second add of a: %+v, %v", again, err)
	}
	if found, err := m.deleteAgent(ctx, "b", "test", nil); !found || err != nil {
		t.Fatalf("delete b: %v %v", found, err)
	}
	if r, _ := addAgent(t, m, "d"); r.Addr.String() != "10.99.0.3" {
		t.Fatalf("d got %s, want b's freed 10.99.0.3", r.Addr)
	}
	addAgent(t, m, "e")
	addAgent(t, m, "f")
	if _, err := addAgent(t, m, "g"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("sixth agent in a /29: %v", err)
	}
	m.st.Close()

	m2 := dbManager(t, path, func(c *Config) { c.Subnet = netip.MustParsePrefix("10.99.0.0/29") })
	rows, err := loadAgents(ctx, m2.st.Read())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.ID] = r.Addr.String()
	}
	want := map[string]string{"a": "10.99.0.2", "c": "10.99.0.4", "d": "10.99.0.3", "e": "10.99.0.5", "f": "10.99.0.6"}
	if len(got) != len(want) {
		t.Fatalf("after reopening: %v", got)
	}
	for id, a := range want {
		if got[id] != a {
			t.Errorf("after reopening, %s has %s, want %s", id, got[id], a)
		}
	}
}

// TestReaddress: a new subnet in the configuration moves every agent into
// it, in order, and says so in the audit log; one too small is refused.
func TestReaddress(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	m := dbManager(t, path)
	for _, id := range []string{"a", "b", "c"} {
		addAgent(t, m, id)
	}
	m.st.Close()
	m2 := dbManager(t, path, func(c *Config) { c.Subnet = netip.MustParsePrefix("172.31.9.0/24") })
	rows, _ := loadAgents(ctx, m2.st.Read())
	var got []string
	for _, r := range rows {
		got = append(got, r.ID+"="+r.Addr.String())
	}
	if want := []string{"a=172.31.9.2", "b=172.31.9.3", "c=172.31.9.4"}; !slices.Equal(got, want) {
		t.Fatalf("after readdressing: %v", got)
	}
	recs, _ := m2.st.AuditLog(ctx, 0, 100)
	if recs[len(recs)-1].Action != "netpolicy.network.readdressed" {
		t.Errorf("last audit record %s", recs[len(recs)-1].Action)
	}
	m2.st.Close()
	cfg := validConfig()
	cfg.Subnet = netip.MustParsePrefix("172.31.9.0/29")
	cfg.Limits.Agents = 2
	m3, err := New(openStore(t, path), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m3.openNetwork(ctx); !errors.Is(err, ErrExhausted) {
		t.Fatalf("3 agents into room for 2: %v", err)
	}
}

// TestStorePolicy: a policy that takes something away gets a fresh mark;
// one that only adds keeps it.
func TestStorePolicy(t *testing.T) {
	ctx := context.Background()
	m := dbManager(t, filepath.Join(t.TempDir(), "state.db"))
	a, _ := compileEgress(Egress{Names: []string{"a.test"}})
	ab, _ := compileEgress(Egress{Names: []string{"a.test", "b.test"}})
	r1, err := m.storePolicy(ctx, "x", "test", a, false)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := m.storePolicy(ctx, "x", "test", ab, ab.removedFrom(a))
	r3, _ := m.storePolicy(ctx, "x", "test", a, a.removedFrom(ab))
	if r1.Mark != r2.Mark || r3.Mark == r2.Mark {
		t.Fatalf("marks %d %d %d: want same, same, new", r1.Mark, r2.Mark, r3.Mark)
	}
	got, err := m.Policy(ctx, "x")
	if err != nil || !slices.Equal(got.Names, []string{"a.test"}) {
		t.Fatalf("Policy = %+v, %v", got, err)
	}
	if _, err := m.Policy(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown agent: %v", err)
	}
	if err := m.SetPolicy(ctx, "Bad_ID", Egress{}, "test"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad id: %v", err)
	}
	// Without a running network SetPolicy stores, for Start to apply.
	if err := m.SetPolicy(ctx, "y", Egress{CIDRs: []string{"192.0.2.0/24"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Policy(ctx, "y"); !slices.Equal(got.CIDRs, []string{"192.0.2.0/24"}) {
		t.Fatalf("stored policy %+v", got)
	}
}

// TestCheckAgentID: every container id the agents domain makes (an id of
// up to 63 characters, "-g" and a generation) is accepted; what is not an
// id is refused, naming the field.
func TestCheckAgentID(t *testing.T) {
	long := strings.Repeat("a", 63)
	for id, ok := range map[string]bool{
		"sample-tool-g1":        true,
		long + "-g1":            true,
		long + "-g12345678901":  true,
		long + "-g123456789012": false, // 77: over containerd's 76
		"a":                     true,
		"":                      false,
		"-a":                    false,
		"a-":                    false,
		"Sample-g1":             false,
		"a_b":                   false,
		"a.b":                   false,
		"a b":                   false,
		"agent-\x1b[31m":        false,
		strings.Repeat("a", 76): true,
		strings.Repeat("a", 77): false,
	} {
		err := checkAgentID(id)
		if (err == nil) != ok {
			t.Errorf("checkAgentID(%q) = %v, want ok %t", id, err, ok)
		}
		var ie *InvalidError
		if err != nil && (!errors.As(err, &ie) || len(ie.Problems) != 1 || ie.Problems[0].Field != "agent_id") {
			t.Errorf("checkAgentID(%q): %v does not name agent_id", id, err)
		}
	}
}
