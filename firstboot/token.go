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
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/safeyaml"
	"github.com/omertaos/omertaos/appliance/store"
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
	// ErrBannerNotScrubbed: Redeem consumed the token, but the login banner
	// still shows it (used, so harmless); the caller goes on with setup.
	ErrBannerNotScrubbed = errors.New("setup token redeemed, but the login banner could not be updated")
	ErrNoToken           = errors.New("no setup token was issued")
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

// tokenFileLimit caps the token file: a few hundred bytes of JSON.
const tokenFileLimit = 4096

func readToken(p string) (setupToken, error) {
	var t setupToken
	data, err := safeio.ReadFile(p, tokenFileLimit)
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

// stepToken issues the one-time setup token and writes the console's login
// banner with it. A token is issued once per machine: when the token file
// exists (used, expired, even unreadable) a token was issued, and a rerun of
// first boot (an interrupted one, or one whose journal was removed) keeps it
// rather than issue a second behind the report's back. Another one takes
// `omerta firstboot reissue-token`, which is audited (see ReissueToken).
func (r *runner) stepToken(ctx context.Context) (any, string, error) {
	sd, err := r.site()
	if err != nil {
		return nil, "", err
	}
	now := r.opts.Now().UTC()
	p := r.path(TokenPath)
	t, err := readToken(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t, err = issueToken(now, sd.Config.Firstboot.TokenTTL)
		if err != nil {
			return nil, "", fmt.Errorf("setup token: %w", err)
		}
		if err := writeToken(p, t); err != nil {
			return nil, "", fmt.Errorf("setup token: %w", err)
		}
	case err != nil:
		r.printf("setup token: %s is unreadable (%s); no other token is issued without `omerta firstboot reissue-token`", TokenPath, safeyaml.Escape(err.Error()))
	}
	r.mid()
	b, err := r.banner()
	if err != nil {
		return nil, "", err
	}
	if err := writeIssue(r.path(IssuePath), b.issue()); err != nil {
		return nil, "", fmt.Errorf("setup token: %w", err)
	}
	return tokenData{ExpiresAt: t.ExpiresAt}, "", nil
}

func issueToken(now time.Time, ttl time.Duration) (setupToken, error) {
	tok, err := newToken()
	if err != nil {
		return setupToken{}, err
	}
	return setupToken{Token: tok, TokenSHA256: sha256Hex(tok), CreatedAt: now, ExpiresAt: now.Add(ttl).Truncate(time.Second)}, nil
}

// issueMode: getty reads /etc/issue.d as root, and the banner holds the
// plaintext token, so nobody else may read it.
const issueMode = 0o600

func writeIssue(p, text string) error {
	_, err := atomicfile.WriteFile(p, []byte(text), issueMode)
	return err
}

// Redeem consumes the setup token on root if token matches it and it is
// neither used nor expired. The comparison takes the same time wherever the
// guess differs. The token stops working before Redeem returns: the file
// keeps only its hash, and the login banner loses it.
func Redeem(root, token string, now time.Time) error {
	root = rootOr(root)
	p := under(root, TokenPath)
	// Two browsers racing with the same token: only one may win.
	unlock, err := lockToken(p)
	if errors.Is(err, ErrNoToken) {
		return ErrNoToken
	}
	if err != nil {
		return err
	}
	defer unlock()

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
	// The token is spent from here on: a banner that cannot be rewritten
	// must not fail the redemption, or setup would fail with the token
	// used up and nobody could ever set the appliance up.
	if err := scrubIssue(under(root, IssuePath)); err != nil {
		return fmt.Errorf("%w: %w", ErrBannerNotScrubbed, err)
	}
	return nil
}

// scrubIssue replaces the token line of the login banner once it is used.
func scrubIssue(p string) error {
	data, err := safeio.ReadFile(p, issueFileLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("login banner: %w", err)
	}
	return replaceTokenLine(p, data, "(used)")
}

// issueFileLimit caps the login banner: a few lines.
const issueFileLimit = 64 << 10

// replaceTokenLine rewrites the banner's token line to say value.
func replaceTokenLine(p string, data []byte, value string) error {
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.Contains(l, "Setup token:") {
			lines[i] = "  Setup token:      " + value
		}
	}
	if err := writeIssue(p, strings.Join(lines, "\n")); err != nil {
		return fmt.Errorf("login banner: %w", err)
	}
	return nil
}

// ReissueOptions say who asks for a new setup token, for the audit record.
type ReissueOptions struct {
	// Root is the appliance's root; "" means "/".
	Root string
	// Actor names who asked ("uid:0 on tty1"); it is recorded, never trusted.
	Actor string
	// TTL is the new token's lifetime; 0 means the installed
	// configuration's firstboot.token_ttl.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Reissued is the outcome of ReissueToken.
type Reissued struct {
	Token     string
	ExpiresAt time.Time
	// AuditedIn names where the audit record went: the state database, or
	// TokenAuditPath when there is none.
	AuditedIn string
}

// TokenAuditPath receives re-issue records when the state database is
// missing, so that a re-issue is never unrecorded.
var TokenAuditPath = path.Join(Dir, "token-audit.jsonl")

// ReissueToken replaces the setup token with a new one, whatever state the
// old one is in (used, expired, lost), and puts the new one in the login
// banner. First boot issues a token once; only this, run by root, issues
// another, and it writes the audit record first: no token is issued that the
// audit log does not know of. The record holds the new token's hash, never
// the token.
func ReissueToken(ctx context.Context, o ReissueOptions) (Reissued, error) {
	root := rootOr(o.Root)
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = config.Default().Firstboot.TokenTTL
		if cfg, err := config.Load(under(root, config.DefaultPath)); err == nil {
			ttl = cfg.Firstboot.TokenTTL
		}
	}
	if ttl < time.Minute || ttl > 30*24*time.Hour {
		return Reissued{}, fmt.Errorf("setup token: a lifetime of %s is outside 1m..720h", ttl)
	}
	p := under(root, TokenPath)
	unlock, err := lockToken(p)
	if err != nil {
		return Reissued{}, err
	}
	defer unlock()

	old, readErr := readToken(p)
	t, err := issueToken(now().UTC(), ttl)
	if err != nil {
		return Reissued{}, fmt.Errorf("setup token: %w", err)
	}
	detail := map[string]any{"token_sha256": t.TokenSHA256, "expires_at": t.ExpiresAt, "previous": previousState(old, readErr, now())}
	where, err := auditReissue(ctx, root, o.Actor, detail, now)
	if err != nil {
		return Reissued{}, fmt.Errorf("setup token: not re-issued, the audit record could not be written: %w", err)
	}
	if err := writeToken(p, t); err != nil {
		return Reissued{}, fmt.Errorf("setup token: %w", err)
	}
	ip := under(root, IssuePath)
	data, err := safeio.ReadFile(ip, issueFileLimit)
	switch {
	case err == nil:
		err = replaceTokenLine(ip, data, t.Token+"   (single use, valid until "+t.ExpiresAt.Format(time.RFC3339)+")")
	case errors.Is(err, fs.ErrNotExist):
		err = nil // no banner to update; the caller shows the token
	}
	if err != nil {
		return Reissued{}, fmt.Errorf("setup token: re-issued, but %w", err)
	}
	return Reissued{Token: t.Token, ExpiresAt: t.ExpiresAt, AuditedIn: where}, nil
}

// lockToken takes the lock Redeem takes, so a re-issue and a redemption
// never interleave.
func lockToken(p string) (unlock func(), err error) {
	lock, err := os.OpenFile(filepath.Join(filepath.Dir(p), ".setup-token.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("setup token: %s does not exist; first boot has not run: %w", StateDir, ErrNoToken)
	}
	if err != nil {
		return nil, fmt.Errorf("setup token: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("setup token: locking: %w", err)
	}
	return func() {
		unix.Flock(int(lock.Fd()), unix.LOCK_UN)
		lock.Close()
	}, nil
}

// previousState describes the token being replaced, for the audit record.
func previousState(t setupToken, err error, now time.Time) map[string]any {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return map[string]any{"state": "none"}
	case err != nil:
		return map[string]any{"state": "unreadable"}
	case !t.UsedAt.IsZero() || t.Token == "":
		return map[string]any{"state": "used", "token_sha256": t.TokenSHA256}
	case !now.Before(t.ExpiresAt):
		return map[string]any{"state": "expired", "token_sha256": t.TokenSHA256}
	}
	return map[string]any{"state": "unused", "token_sha256": t.TokenSHA256}
}

// auditReissue records the re-issue in the state database's audit log, or,
// when the machine has none, appends it (fsynced) to TokenAuditPath.
func auditReissue(ctx context.Context, root, actor string, detail map[string]any, now func() time.Time) (string, error) {
	if actor == "" {
		actor = "unknown"
	}
	db := under(root, StateDBPath)
	if _, err := os.Stat(db); err == nil {
		st, err := store.Open(ctx, db, store.WithSchemas(Schema), store.WithClock(now))
		if err != nil {
			return "", err
		}
		defer st.Close()
		err = st.Audit(ctx, store.AuditEntry{Actor: actor, Action: "firstboot.token.reissue", Target: TokenPath, Detail: detail})
		return StateDBPath, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	rec, err := json.Marshal(map[string]any{"at": now().UTC(), "actor": actor, "action": "firstboot.token.reissue", "target": TokenPath, "detail": detail})
	if err != nil {
		return "", err
	}
	p := under(root, TokenAuditPath)
	if err := mkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(append(rec, '\n')); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return TokenAuditPath, f.Close()
}
