package daemon

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/store"
)

// runDaemon starts the daemon, lets check look at it while it serves, and
// stops it; it returns what the daemon logged.
func runDaemon(t *testing.T, cfg config.Config, check func(c *apiclient.Client)) string {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs := make(chan string, 100)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log, WithNotifier(chanNotifier(msgs))) }()
	var seen []string
	waitFor(t, msgs, "READY=1", &seen)
	if check != nil {
		c := apiclient.New(cfg.Daemon.Socket)
		check(c)
		c.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v\n%s", err, logs.String())
	}
	return logs.String()
}

func statePath(cfg config.Config) string { return cfg.StateDBPath() }

// rawExec changes the database around the store and its triggers, as
// someone with the file would.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestChainVerifiedAtStart: a chain that is broken, truncated or restarted
// is logged as an error, recorded, and served by the API; the daemon still
// starts. Before, VerifyAudit ran only in tests and a lost chain silently
// started again at seq 1.
func TestChainVerifiedAtStart(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, cfg config.Config) // after one clean run
		state   string
		actions []string // of the second run, in order
	}{
		{"intact", func(*testing.T, config.Config) {}, apitype.ChainIntact,
			[]string{"daemon.start", "daemon.stop"}},
		{"broken", func(t *testing.T, cfg config.Config) {
			rawExec(t, statePath(cfg), "DROP TRIGGER audit_no_update", "UPDATE audit SET target='edited' WHERE seq=1")
		}, apitype.ChainBroken, []string{"audit.chain.broken", "daemon.start", "daemon.stop"}},
		{"restarted", func(t *testing.T, cfg config.Config) {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(statePath(cfg) + suffix)
			}
		}, apitype.ChainRestarted, []string{store.ResumeAction, "audit.chain.restarted", "daemon.start", "daemon.stop"}},
		{"truncated", func(t *testing.T, cfg config.Config) {
			// An older copy put back: the anchor names records it lacks.
			old := filepath.Join(t.TempDir(), "old.db")
			rawExec(t, statePath(cfg), "VACUUM INTO '"+old+"'")
			runDaemon(t, cfg, nil)
			copyFile(t, old, statePath(cfg))
			os.Remove(statePath(cfg) + "-wal")
			os.Remove(statePath(cfg) + "-shm")
		}, apitype.ChainTruncated, []string{store.ResumeAction, "audit.chain.truncated", "daemon.start", "daemon.stop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if logs := runDaemon(t, cfg, nil); !strings.Contains(logs, "audit chain is empty") {
				t.Errorf("first start did not log an empty chain:\n%s", logs)
			}
			tt.prepare(t, cfg)
			before := 0
			if _, err := os.Stat(statePath(cfg)); err == nil {
				before = len(auditLog(t, cfg))
			}
			logs := runDaemon(t, cfg, func(c *apiclient.Client) {
				ctx := context.Background()
				s, err := c.AuditStatus(ctx)
				if err != nil || s.State != tt.state || s.CheckedAt.IsZero() {
					t.Errorf("audit status = %+v, %v; want state %s", s, err, tt.state)
				}
				if (tt.state == apitype.ChainIntact) != (s.Problem == "") {
					t.Errorf("problem = %q for state %s", s.Problem, s.State)
				}
				if h, err := c.Health(ctx); err != nil || h.Status != apitype.HealthOK || h.AuditChain != tt.state {
					t.Errorf("health = %+v, %v; want ok with audit_chain %s", h, err, tt.state)
				}
			})
			var actions []string
			for _, r := range auditLog(t, cfg)[before:] {
				actions = append(actions, r.Action)
			}
			if !slices.Equal(actions, tt.actions) {
				t.Errorf("actions of the second run = %q, want %q", actions, tt.actions)
			}
			logsError := strings.Contains(logs, "level=ERROR") && strings.Contains(logs, "state="+tt.state)
			if logsError != (tt.state != apitype.ChainIntact) {
				t.Errorf("error logged = %v for state %s:\n%s", logsError, tt.state, logs)
			}
		})
	}
}
