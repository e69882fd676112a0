package store

import (
	"bytes"
	"context"
	"database/sql"
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

// Audit appends e to the audit log in its own durable transaction.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	return s.Write(ctx, func(tx *sql.Tx) error { return s.AuditTx(ctx, tx, e) })
}

// AuditTx appends e inside tx, so that an action and its audit record commit
// or roll back together. tx must come from Write.
//
// The first append in a transaction compares the chain it extends with the
// anchor. When the chain lost records the anchor names (truncated), is empty
// although the anchor says there was one (restarted), or the anchor file is
// unreadable, AuditTx first appends an "audit.chain.resumed" record whose
// detail holds the anchor and the head it found, so the new part of the chain
// documents the discontinuity, hash-chained like every other record, instead
// of silently starting over.
func (s *Store) AuditTx(ctx context.Context, tx *sql.Tx, e AuditEntry) error {
	if e.Actor == "" || e.Action == "" {
		return fmt.Errorf("audit entry: actor and action are required (actor %q, action %q)", e.Actor, e.Action)
	}
	ts := s.txState(tx)
	if ts == nil {
		return fmt.Errorf("audit entry %s: the transaction was not started by Store.Write", e.Action)
	}
	detail, err := encodeDetail(e.Detail)
	if err != nil {
		return fmt.Errorf("audit entry %s: %w", e.Action, err)
	}
	head, err := chainHead(ctx, tx)
	if err != nil {
		return fmt.Errorf("audit entry %s: %w", e.Action, err)
	}
	if !ts.checked {
		if head, err = s.resumeIfDiscontinuous(ctx, tx, head); err != nil {
			return fmt.Errorf("audit entry %s: %w", e.Action, err)
		}
		ts.checked = true
	}
	ts.head, err = s.appendRecord(ctx, tx, head, e.Actor, e.Action, e.Target, detail)
	if err != nil {
		return fmt.Errorf("audit entry %s: %w", e.Action, err)
	}
	return nil
}

// encodeDetail is the compact JSON of a detail value; nil is {}.
func encodeDetail(v any) (string, error) {
	if v == nil {
		return "{}", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding detail: %w", err)
	}
	// Marshal passes json.RawMessage through as is; compact it so that
	// what is hashed does not depend on the caller's spacing.
	if b, err = compactJSON(b); err != nil {
		return "", fmt.Errorf("detail: %w", err)
	}
	return string(b), nil
}

// chainHead is the newest record's seq and hash; seq 0 and the zero hash
// for an empty log.
func chainHead(ctx context.Context, tx *sql.Tx) (anchor, error) {
	head := anchor{Hash: zeroHash}
	err := tx.QueryRowContext(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&head.Seq, &head.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return head, fmt.Errorf("reading chain head: %w", err)
	}
	return head, nil
}

func (s *Store) appendRecord(ctx context.Context, tx *sql.Tx, head anchor, actor, action, target, detail string) (anchor, error) {
	seq := head.Seq + 1
	at := FormatTime(s.now())
	h := auditHash(seq, at, actor, action, target, detail, head.Hash)
	_, err := tx.ExecContext(ctx,
		"INSERT INTO audit(seq, at, actor, action, target, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
		seq, at, actor, action, target, detail, head.Hash, h)
	if err != nil {
		return head, err
	}
	return anchor{Seq: seq, Hash: h}, nil
}

// ResumeAction is the action of the record the store appends before the
// first record that extends a chain which does not match its anchor.
const ResumeAction = "audit.chain.resumed"

// resumeIfDiscontinuous compares the anchor with the chain inside tx (the
// write lock is held, so no other commit can move the head meanwhile) and,
// on a mismatch, appends the ResumeAction record; it returns the new head.
func (s *Store) resumeIfDiscontinuous(ctx context.Context, tx *sql.Tx, head anchor) (anchor, error) {
	a, aErr := readAnchor(s.anchorPath())
	if anchorMissing(aErr) {
		return head, nil
	}
	var atAnchor string
	if aErr == nil && a.Seq <= head.Seq {
		if err := tx.QueryRowContext(ctx, "SELECT hash FROM audit WHERE seq = ?", a.Seq).Scan(&atAnchor); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return head, fmt.Errorf("reading record %d to compare with the anchor: %w", a.Seq, err)
		}
	}
	state, problem := judgeAnchor(a, aErr, head.Seq, atAnchor)
	if state == ChainIntact {
		return head, nil
	}
	d := map[string]any{"state": state, "problem": problem, "head_seq": head.Seq, "head_hash": head.Hash}
	if aErr == nil {
		d["anchor_seq"], d["anchor_hash"] = a.Seq, a.Hash
	}
	detail, err := encodeDetail(d)
	if err != nil {
		return head, err
	}
	return s.appendRecord(ctx, tx, head, "store", ResumeAction, "", detail)
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
		if r.At, err = ParseTime("audit", "at", at); err != nil {
			return nil, fmt.Errorf("reading audit record %d: %w", r.Seq, err)
		}
		r.Detail = json.RawMessage(detail)
		out = append(out, r)
	}
	return out, rows.Err()
}
