package firstboot

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/store"
)

// forgetFirstBoot removes what lets a rerun of first boot know it ran: the
// journal and the done marker. The token file stays.
func forgetFirstBoot(t *testing.T, root string) {
	t.Helper()
	for _, p := range []string{JournalPath, DonePath, SiteBasePath} {
		if err := os.Remove(under(root, p)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTokenIssuedOnce: with the journal removed, first boot ran again from
// the start and issued a second setup token, silently. The token file is
// the memory now: used, expired or unreadable, it stays, and the banner
// says what to do.
func TestTokenIssuedOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, root string, tok setupToken)
		later  time.Duration
		banner string
	}{
		{"used", func(t *testing.T, root string, tok setupToken) {
			if err := Redeem(root, tok.Token, time.Now()); err != nil {
				t.Fatal(err)
			}
		}, 0, "Setup token:      (used)"},
		{"expired", func(*testing.T, string, setupToken) {}, 48 * time.Hour, "Setup token:      (expired at "},
		{"unreadable", func(t *testing.T, root string, _ setupToken) {
			if err := os.WriteFile(under(root, TokenPath), []byte("{not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 0, "Setup token:      (unavailable; `omerta firstboot reissue-token` as root issues a new one)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newTestRoot(t, nil)
			if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
				t.Fatal(err)
			}
			first, err := readToken(under(root, TokenPath))
			if err != nil {
				t.Fatal(err)
			}
			tc.before(t, root, first)
			before, _ := os.ReadFile(under(root, TokenPath))
			forgetFirstBoot(t, root)

			opts := testOptions(root, nil)
			opts.Now = func() time.Time { return time.Now().Add(tc.later) }
			if _, err := Run(context.Background(), opts); err != nil {
				t.Fatal(err)
			}
			after, _ := os.ReadFile(under(root, TokenPath))
			if string(after) != string(before) {
				t.Errorf("a second first boot replaced the token file:\n%s\nwith\n%s", before, after)
			}
			issue, _ := os.ReadFile(under(root, IssuePath))
			if !strings.Contains(string(issue), tc.banner) || tokenLineRE.Match(issue) {
				t.Errorf("banner:\n%s\nwant %q and no token", issue, tc.banner)
			}
		})
	}
}

// TestIssueFileIsPrivate: the login banner holds the plaintext token, and
// getty reads it as root; it was written 0644.
func TestIssueFileIsPrivate(t *testing.T) {
	root := newTestRoot(t, nil)
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		fi, err := os.Stat(under(root, IssuePath))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %s has mode %v, want 0600", when, IssuePath, fi.Mode().Perm())
		}
	}
	check("after first boot")
	tok, _ := readToken(under(root, TokenPath))
	if err := Redeem(root, tok.Token, time.Now()); err != nil {
		t.Fatal(err)
	}
	check("after redeem")
	if _, err := ReissueToken(context.Background(), ReissueOptions{Root: root, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	check("after reissue")
}

// TestReissueToken: the explicit command issues a working token, replaces
// the old one, updates the banner, and records it in the audit log (the
// hashes, never the token).
func TestReissueToken(t *testing.T) {
	root := newTestRoot(t, nil)
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	old, _ := readToken(under(root, TokenPath))
	if err := Redeem(root, old.Token, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	res, err := ReissueToken(context.Background(), ReissueOptions{Root: root, Actor: "uid:0 test", TTL: 2 * time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if !tokenRE.MatchString(res.Token) || res.Token == old.Token || !res.ExpiresAt.Equal(now.Add(2*time.Hour)) || res.AuditedIn != StateDBPath {
		t.Fatalf("ReissueToken = %+v", res)
	}
	issue, _ := os.ReadFile(under(root, IssuePath))
	if !strings.Contains(string(issue), "Setup token:      "+res.Token+"   (single use, valid until 2026-12-01T11:00:00Z)") ||
		!strings.Contains(string(issue), "TLS fingerprint:") {
		t.Errorf("banner after reissue:\n%s", issue)
	}
	if err := Redeem(root, old.Token, now); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("old token: %v", err)
	}

	st, err := store.Open(context.Background(), under(root, StateDBPath), store.WithSchemas(Schema))
	if err != nil {
		t.Fatal(err)
	}
	log, err := st.AuditLog(context.Background(), 0, 1000)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var rec *store.AuditRecord
	for i := range log {
		if log[i].Action == "firstboot.token.reissue" {
			rec = &log[i]
		}
	}
	if rec == nil || rec.Actor != "uid:0 test" || rec.Target != TokenPath {
		t.Fatalf("no audit record of the reissue in %+v", log)
	}
	if strings.Contains(string(rec.Detail), res.Token) || strings.Contains(string(rec.Detail), old.Token) {
		t.Errorf("audit record holds a token: %s", rec.Detail)
	}
	var d struct {
		TokenSHA256 string `json:"token_sha256"`
		Previous    struct {
			State       string `json:"state"`
			TokenSHA256 string `json:"token_sha256"`
		} `json:"previous"`
	}
	if err := json.Unmarshal(rec.Detail, &d); err != nil || d.TokenSHA256 != sha256Hex(res.Token) || d.Previous.State != "used" || d.Previous.TokenSHA256 != old.TokenSHA256 {
		t.Errorf("audit detail %s", rec.Detail)
	}
	if err := Redeem(root, res.Token, now.Add(time.Hour)); err != nil {
		t.Errorf("new token: %v", err)
	}
}

// TestReissueWithoutDatabase: a machine without its state database still
// gets the re-issue recorded, in the first-boot directory.
func TestReissueWithoutDatabase(t *testing.T) {
	root := newTestRoot(t, nil)
	if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(under(root, StateDBPath+suffix))
	}
	res, err := ReissueToken(context.Background(), ReissueOptions{Root: root, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.AuditedIn != TokenAuditPath {
		t.Errorf("audited in %s", res.AuditedIn)
	}
	data, err := os.ReadFile(under(root, TokenAuditPath))
	if err != nil || !strings.Contains(string(data), `"action":"firstboot.token.reissue"`) || !strings.Contains(string(data), sha256Hex(res.Token)) || strings.Contains(string(data), res.Token) {
		t.Errorf("%s = %q, %v", TokenAuditPath, data, err)
	}
	if fi, err := os.Stat(under(root, TokenAuditPath)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode: %v %v", TokenAuditPath, fi, err)
	}
	if _, err := os.Stat(under(root, StateDBPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reissue created a state database: %v", err)
	}
}

func TestReissueBeforeFirstBoot(t *testing.T) {
	if _, err := ReissueToken(context.Background(), ReissueOptions{Root: t.TempDir()}); !errors.Is(err, ErrNoToken) {
		t.Errorf("ReissueToken on an empty root = %v, want ErrNoToken", err)
	}
	if _, err := ReissueToken(context.Background(), ReissueOptions{Root: t.TempDir(), TTL: time.Second}); err == nil {
		t.Error("a one-second token was issued")
	}
}
