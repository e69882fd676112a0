package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AuditEntry is one action to record.
type AuditEntry struct {
	Actor  string // who: "omertad", "firstboot", "uid:1000"
	Action string // what: dotted verb, "probe.drift"
	Target string // on what: an id or path, may be empty
	Detail any    // JSON-encodable; nil means {}
}

// AuditRecord is a stored entry with its place in the chain.
type AuditRecord struct {
	Seq      int64           `json:"seq"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Target   string          `json:"target"`
	Detail   json.RawMessage `json:"detail"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// ErrAuditChain is returned (wrapped) by VerifyAudit when the chain is broken.
var ErrAuditChain = errors.New("audit chain broken")

var zeroHash = strings.Repeat("0", 64)

// auditHash is SHA-256 over the JSON array
// [seq, at, actor, action, target, detail, prev_hash]; JSON gives every field
// an unambiguous boundary, so no two different rows hash the same input.
func auditHash(seq int64, at, actor, action, target, detail, prev string) string {
	b, _ := json.Marshal([]any{seq, at, actor, action, target, json.RawMessage(detail), prev})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Audit appends e to the audit log in its own durable transaction.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return s.AuditTx(ctx, tx, e) })
}

// AuditTx appends e inside tx, so that an action and its audit record commit
// or roll back together.
func (s *Store) AuditTx(ctx context.Context, tx *sql.Tx, e AuditEntry) error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("audit entry: actor and action are required (actor %q, action %q)", e.Actor, e.Action)
	}
	detail := []byte("{}")
	if e.Detail != nil {
		var err error
		if detail, err = json.Marshal(e.Detail); err != nil {
			return fmt.Errorf("audit entry %s: encoding detail: %w", e.Action, err)
		}
		// Marshal passes json.RawMessage through as is; compact it so
		// that what is hashed does not depend on the caller's spacing.
		detail, err = compactJSON(detail)
		if err != nil {
			return fmt.Errorf("audit entry %s: detail: %w", e.Action, err)
		}
	}
	var seq int64
	prev := zeroHash
	err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("audit entry %s: reading chain head: %w", e.Action, err)
	}
	seq++
	at := s.now().UTC().Format(time.RFC3339Nano)
	h := auditHash(seq, at, e.Actor, e.Action, e.Target, string(detail), prev)
	_, err = tx.ExecContext(ctx,
		"INSERT INTO audit(seq, at, actor, action, target, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
		seq, at, e.Actor, e.Action, e.Target, string(detail), prev, h)
	if err != nil {
		return fmt.Errorf("audit entry %s: %w", e.Action, err)
	}
	return nil
}

func compactJSON(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// AuditLog returns up to limit records with seq > after, oldest first.
func (s *Store) AuditLog(ctx context.Context, after int64, limit int) ([]AuditRecord, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := s.reader.QueryContext(ctx,
		"SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at, detail string
		if err := rows.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Target, &detail, &r.PrevHash, &r.Hash); err != nil {
			return nil, fmt.Errorf("reading audit log: %w", err)
		}
		if r.At, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return nil, fmt.Errorf("audit record %d: bad time %q: %w", r.Seq, at, err)
		}
		r.Detail = json.RawMessage(detail)
		out = append(out, r)
	}
	return out, rows.Err()
}

// VerifyAudit walks the whole chain and returns the number of records checked,
// or an ErrAuditChain naming the first record that does not match.
func (s *Store) VerifyAudit(ctx context.Context) (int64, error) {
	rows, err := s.reader.QueryContext(ctx,
		"SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit ORDER BY seq")
	if err != nil {
		return 0, fmt.Errorf("verifying audit log: %w", err)
	}
	defer rows.Close()
	var n int64
	prev := zeroHash
	for rows.Next() {
		var seq int64
		var at, actor, action, target, detail, prevHash, hash string
		if err := rows.Scan(&seq, &at, &actor, &action, &target, &detail, &prevHash, &hash); err != nil {
			return n, fmt.Errorf("verifying audit log: %w", err)
		}
		switch {
		case seq != n+1:
			return n, fmt.Errorf("%w: record %d follows record %d (a record was removed)", ErrAuditChain, seq, n)
		case prevHash != prev:
			return n, fmt.Errorf("%w: record %d: prev_hash does not match record %d's hash", ErrAuditChain, seq, n)
		case auditHash(seq, at, actor, action, target, detail, prevHash) != hash:
			return n, fmt.Errorf("%w: record %d: content does not match its hash (the record was edited)", ErrAuditChain, seq)
		}
		prev = hash
		n++
	}
	return n, rows.Err()
}
