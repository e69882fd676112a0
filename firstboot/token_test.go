package firstboot

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omertaos/omertaos/firstboot/report"
)

func writeTestToken(t *testing.T, root, tok string, created time.Time, ttl time.Duration) {
	t.Helper()
	if err := os.MkdirAll(under(root, StateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeToken(under(root, TokenPath), setupToken{Token: tok, TokenSHA256: sha256Hex(tok), CreatedAt: created, ExpiresAt: created.Add(ttl)}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(under(root, "/etc/issue.d"), 0o755)
	os.WriteFile(under(root, IssuePath), []byte("\nOMERTAOS is ready.\n  Setup token:      "+tok+"   (single use)\n"), 0o644)
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := newToken()
		if err != nil {
			t.Fatal(err)
		}
		if !tokenRE.MatchString(tok) {
			t.Fatalf("token %q is not 32 lowercase base32 characters", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
	}
	if tokenBytes*8 < 128 {
		t.Errorf("token has %d bits", tokenBytes*8)
	}
}

func TestRedeem(t *testing.T) {
	const tok = "abcdefghijklmnopqrstuvwxyz234567"
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		guess string
		at    time.Time
		want  error
	}{
		{"right", tok, t0.Add(time.Minute), nil},
		{"right with spaces", " " + tok + "\n", t0.Add(time.Minute), nil},
		{"wrong", "bbcdefghijklmnopqrstuvwxyz234567", t0.Add(time.Minute), ErrTokenInvalid},
		{"empty", "", t0.Add(time.Minute), ErrTokenInvalid},
		{"prefix", tok[:31], t0.Add(time.Minute), ErrTokenInvalid},
		{"expired", tok, t0.Add(24 * time.Hour), ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTestToken(t, root, tok, t0, 24*time.Hour)
			err := Redeem(root, tc.guess, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Redeem = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			// Used: the file keeps no working secret, the banner
			// loses it, and a second use fails.
			data, _ := os.ReadFile(under(root, TokenPath))
			if strings.Contains(string(data), tok) {
				t.Errorf("token file still holds the token:\n%s", data)
			}
			issue, _ := os.ReadFile(under(root, IssuePath))
			if strings.Contains(string(issue), tok) || !strings.Contains(string(issue), "Setup token:      (used)") {
				t.Errorf("banner after use:\n%s", issue)
			}
			if err := Redeem(root, tok, tc.at); !errors.Is(err, ErrTokenUsed) {
				t.Errorf("second Redeem = %v, want ErrTokenUsed", err)
			}
			if fi, _ := os.Stat(under(root, TokenPath)); fi.Mode().Perm() != 0o600 {
				t.Errorf("token file mode %v", fi.Mode())
			}
		})
	}
	if err := Redeem(t.TempDir(), tok, t0); !errors.Is(err, ErrNoToken) {
		t.Errorf("Redeem without a token = %v", err)
	}
}

func TestRedeemRaceHasOneWinner(t *testing.T) {
	const tok = "abcdefghijklmnopqrstuvwxyz234567"
	root := t.TempDir()
	now := time.Now()
	writeTestToken(t, root, tok, now, time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if Redeem(root, tok, now) == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d redemptions succeeded, want 1", wins)
	}
}

func TestTokenReusedOnResume(t *testing.T) {
	root := newTestRoot(t, nil)
	opts := testOptions(root, nil)
	var killed bool
	opts.Hook = func(step, point string) {
		if step == StepReport && point == "before" && !killed {
			killed = true
			panic(errStop)
		}
	}
	func() {
		defer func() {
			if r := recover(); r != errStop {
				panic(r)
			}
		}()
		Run(t.Context(), opts)
	}()
	first, err := readToken(under(root, TokenPath))
	if err != nil {
		t.Fatal(err)
	}
	// Force the token step to run again, as if cut off in its middle.
	j, _ := ReadJournal(under(root, JournalPath))
	j.step(StepToken).Status = StatusRunning
	j.write(under(root, JournalPath))
	if _, err := Run(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	second, _ := readToken(under(root, TokenPath))
	if first.Token != second.Token || first.ExpiresAt != second.ExpiresAt {
		t.Errorf("resume issued a new token")
	}
}

var errStop = errors.New("stop")

// TestFirstbootDoesNotRunLynis: first boot only decides; the audit runs
// Lynis, once, and a finished audit does not run it again.
func TestFirstbootDoesNotRunLynis(t *testing.T) {
	root := newTestRoot(t, nil)
	opts := testOptions(root, nil)
	calls := 0
	opts.Lynis = fixtureLynis(&calls)
	if _, err := Run(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Fatalf("first boot ran Lynis %d times", calls)
	}
	for range 2 {
		if _, err := RunAudit(t.Context(), AuditOptions{Options: opts}); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("Lynis ran %d times", calls)
	}
	if st := readReport(t, root).AuditState(); st.Status != report.AuditDone || st.Lynis.Index != 56 {
		t.Errorf("report's audit = %+v", st)
	}
}

// A login banner that cannot be rewritten (read-only /etc under omertad's
// ProtectSystem=strict, or not a regular file) must not hide that the token
// was spent: Redeem says so with ErrBannerNotScrubbed, and the token is used.
func TestRedeemBannerNotWritable(t *testing.T) {
	const tok = "abcdefghijklmnopqrstuvwxyz234567"
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	root := t.TempDir()
	writeTestToken(t, root, tok, t0, 24*time.Hour)
	if err := os.Remove(under(root, IssuePath)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(under(root, IssuePath), 0o755); err != nil { // not a regular file
		t.Fatal(err)
	}
	err := Redeem(root, tok, t0.Add(time.Minute))
	if !errors.Is(err, ErrBannerNotScrubbed) {
		t.Fatalf("Redeem = %v, want ErrBannerNotScrubbed", err)
	}
	if err := Redeem(root, tok, t0.Add(time.Minute)); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("second Redeem = %v, want ErrTokenUsed: the first one spent the token", err)
	}
}
