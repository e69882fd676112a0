package firstboot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// tokenBytes is 160 bits: more than the 128 the threat model asks for, and
// exactly 32 base32 characters with no padding.
const tokenBytes = 20

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var tokenRE = regexp.MustCompile(`^[a-z2-7]{32}$`)

// Errors of Redeem. The console should show the same message for all of
// them, so that a guesser learns nothing.
var (
	ErrTokenInvalid = errors.New("setup token does not match")
	ErrTokenUsed    = errors.New("setup token was already used")
	ErrTokenExpired = errors.New("setup token has expired")
	ErrNoToken      = errors.New("no setup token was issued")
)

// setupToken is the file at TokenPath. After use, Token is emptied and only
// its hash remains, so the file never holds a secret that works.
type setupToken struct {
	Token       string    `json:"token,omitempty"`
	TokenSHA256 string    `json:"token_sha256"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	UsedAt      time.Time `json:"used_at,omitzero"`
}

func (t setupToken) usable(now time.Time) bool {
	return t.Token != "" && t.UsedAt.IsZero() && now.Before(t.ExpiresAt) && tokenRE.MatchString(t.Token)
}

func readToken(p string) (setupToken, error) {
	var t setupToken
	data, err := os.ReadFile(p)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("%s: %w", p, err)
	}
	return t, nil
}

func writeToken(p string, t setupToken) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	_, err = atomicfile.WriteFile(p, append(data, '\n'), 0o600)
	return err
}

func newToken() (string, error) {
	var b [tokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return tokenEncoding.EncodeToString(b[:]), nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// tokenData is what the token step journals: never the token itself.
type tokenData struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// stepToken issues the one-time setup token (reusing one that an
// interrupted run already issued and that is still good) and writes the
// console's login banner with it.
func (r *runner) stepToken(ctx context.Context) (any, string, error) {
	sd, err := r.site()
	if err != nil {
		return nil, "", err
	}
	now := r.opts.Now().UTC()
	p := r.path(TokenPath)
	t, err := readToken(p)
	if err != nil || !t.usable(now) {
		tok, err := newToken()
		if err != nil {
			return nil, "", fmt.Errorf("setup token: %w", err)
		}
		t = setupToken{Token: tok, TokenSHA256: sha256Hex(tok), CreatedAt: now, ExpiresAt: now.Add(sd.Config.Firstboot.TokenTTL).Truncate(time.Second)}
		if err := writeToken(p, t); err != nil {
			return nil, "", fmt.Errorf("setup token: %w", err)
		}
	}
	r.mid()
	b, err := r.banner()
	if err != nil {
		return nil, "", err
	}
	if _, err := atomicfile.WriteFile(r.path(IssuePath), []byte(b.issue()), 0o644); err != nil {
		return nil, "", fmt.Errorf("setup token: %w", err)
	}
	return tokenData{ExpiresAt: t.ExpiresAt}, "", nil
}

// Redeem consumes the setup token on root if token matches it and it is
// neither used nor expired. The comparison takes the same time wherever the
// guess differs. The token stops working before Redeem returns: the file
// keeps only its hash, and the login banner loses it.
func Redeem(root, token string, now time.Time) error {
	root = rootOr(root)
	p := under(root, TokenPath)
	// Two browsers racing with the same token: only one may win.
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(p), ".setup-token.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoToken
	}
	if err != nil {
		return fmt.Errorf("setup token: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("setup token: locking: %w", err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	t, err := readToken(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNoToken
	}
	if err != nil {
		return fmt.Errorf("setup token: %w", err)
	}
	// Hash both sides so the comparison is over equal lengths whatever
	// was typed.
	want, _ := hex.DecodeString(t.TokenSHA256)
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := len(want) == sha256.Size && subtle.ConstantTimeCompare(want, got[:]) == 1
	switch {
	case !match:
		return ErrTokenInvalid
	case !t.UsedAt.IsZero() || t.Token == "":
		return ErrTokenUsed
	case !now.Before(t.ExpiresAt):
		return ErrTokenExpired
	}
	t.Token = ""
	t.UsedAt = now.UTC()
	if err := writeToken(p, t); err != nil {
		return fmt.Errorf("setup token: %w", err)
	}
	return scrubIssue(under(root, IssuePath))
}

// scrubIssue replaces the token line of the login banner once it is used.
func scrubIssue(p string) error {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("login banner: %w", err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.Contains(l, "Setup token:") {
			lines[i] = "  Setup token:      (used)"
		}
	}
	if _, err := atomicfile.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return fmt.Errorf("login banner: %w", err)
	}
	return nil
}
