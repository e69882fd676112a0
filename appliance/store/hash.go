package store

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// auditHash is SHA-256 over the JSON array
// [seq, at, actor, action, target, detail, prev_hash], exactly as
// json.Marshal([]any{seq, at, ..., json.RawMessage(detail), prev}) encodes
// it; JSON gives every field an unambiguous boundary, so no two different
// rows hash the same input.
func auditHash(seq int64, at, actor, action, target, detail, prev string) string {
	var h hasher
	return h.sum(seq, []byte(at), []byte(actor), []byte(action), []byte(target), []byte(detail), []byte(prev))
}

// hasher computes auditHash with a reused buffer. It writes the common case
// itself (strings of printable ASCII that json.Marshal copies as they are,
// details without the bytes that its HTML escaping rewrites) and hands every
// other value to encoding/json, so the bytes hashed are always Marshal's;
// FuzzAuditHashMatchesMarshal holds that. Verifying a chain is then mostly
// SQLite's row stepping.
type hasher struct {
	buf, tmp []byte
}

func (h *hasher) sum(seq int64, at, actor, action, target, detail, prev []byte) string {
	b := append(h.buf[:0], '[')
	b = strconv.AppendInt(b, seq, 10)
	for _, s := range [][]byte{at, actor, action, target} {
		b = appendJSONString(append(b, ','), s)
	}
	b = append(b, ',')
	var ok bool
	if b, ok = h.appendDetail(b, detail); !ok {
		// Marshal fails on invalid JSON; the hash of that failure is
		// what the chain always computed, and never matches a real row.
		h.buf = b
		return hashHex(nil)
	}
	b = appendJSONString(append(b, ','), prev)
	b = append(b, ']')
	h.buf = b
	return hashHex(b)
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// appendJSONString appends s as json.Marshal encodes a string.
func appendJSONString(b, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(string(s)) // a string always encodes
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendDetail appends detail as json.Marshal encodes a json.RawMessage:
// validated, compacted and HTML-escaped. ok is false when it is not JSON.
func (h *hasher) appendDetail(b, detail []byte) ([]byte, bool) {
	if bytes.ContainsAny(detail, "<>&") || bytes.IndexByte(detail, 0xe2) >= 0 {
		enc, err := json.Marshal(json.RawMessage(detail))
		return append(b, enc...), err == nil
	}
	// Without those bytes HTML escaping changes nothing, and Compact is
	// the same scan and copy that Marshal does.
	buf := bytes.NewBuffer(h.tmp[:0])
	if err := json.Compact(buf, detail); err != nil {
		return b, false
	}
	h.tmp = buf.Bytes()
	return append(b, h.tmp...), true
}

// rawRecord is one audit row as scanned; RawBytes avoid a copy per column
// and are valid only until the next rows.Next.
type rawRecord struct {
	seq                                               int64
	at, actor, action, target, detail, prevHash, hash sql.RawBytes
}

// check verifies r against the record before it (prev; seq 0 and the zero
// hash before the first).
func (h *hasher) check(r *rawRecord, prev anchor) error {
	switch {
	case r.seq != prev.Seq+1:
		return fmt.Errorf("%w: record %d follows record %d (a record was removed)", ErrAuditChain, r.seq, prev.Seq)
	case string(r.prevHash) != prev.Hash:
		return fmt.Errorf("%w: record %d: prev_hash does not match record %d's hash", ErrAuditChain, r.seq, prev.Seq)
	case h.sum(r.seq, r.at, r.actor, r.action, r.target, r.detail, r.prevHash) != string(r.hash):
		return fmt.Errorf("%w: record %d: content does not match its hash (the record was edited)", ErrAuditChain, r.seq)
	}
	return nil
}
