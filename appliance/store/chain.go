package store

import (
	"context"
	"fmt"
)

// ChainState is what VerifyAuditChain found.
type ChainState string

const (
	// ChainIntact: every record links to the one before it, and the
	// chain holds the record the anchor names (or there is no anchor yet,
	// see ChainStatus.Problem).
	ChainIntact ChainState = "intact"
	// ChainEmpty: no records and no anchor, a new installation.
	ChainEmpty ChainState = "empty"
	// ChainBroken: a record was edited, removed or inserted (reported for
	// as long as the record stays so), or the anchor file is not a valid
	// anchor (until the next append records that and rewrites it).
	ChainBroken ChainState = "broken"
	// ChainTruncated: the chain ends before the record the anchor names,
	// or holds a different record there: commits were lost (a WAL lost
	// after SIGKILL) or an older copy of the database was put back.
	ChainTruncated ChainState = "truncated"
	// ChainRestarted: the chain is empty but the anchor says there was
	// one: state.db was replaced or recreated.
	ChainRestarted ChainState = "restarted"
)

// ChainStatus is the result of VerifyAuditChain.
type ChainStatus struct {
	State      ChainState
	Records    int64  // rows in the audit table
	HeadSeq    int64  // seq of the newest row, 0 when there is none
	HeadHash   string // its hash, "" when there is none
	AnchorSeq  int64  // what the anchor file names, 0 when there is none
	AnchorHash string
	Problem    string // why the state is not intact; a note when intact without an anchor
}

// VerifyAuditChain verifies the whole chain and compares its head with the
// anchor. It reads the anchor before the chain: the anchor never names an
// uncommitted record, so a commit by another process in between cannot make
// a good chain look truncated. The error is for a chain that could not be
// read; what is wrong with the chain is in the status.
//
// A truncated or restarted chain stays reported until the next append, which
// first records the discontinuity in the chain (see AuditTx) and moves the
// anchor to the new head.
func (s *Store) VerifyAuditChain(ctx context.Context) (ChainStatus, error) {
	a, aErr := readAnchor(s.anchorPath())
	want := int64(0)
	if aErr == nil {
		want = a.Seq
	}
	sc, err := s.scanChain(ctx, want)
	if err != nil {
		return ChainStatus{}, err
	}
	st := ChainStatus{Records: sc.records, HeadSeq: sc.head.Seq, AnchorSeq: a.Seq, AnchorHash: a.Hash}
	if sc.records > 0 {
		st.HeadHash = sc.head.Hash
	}
	st.State, st.Problem = judgeAnchor(a, aErr, sc.head.Seq, sc.atAnchor)
	switch {
	case sc.broken != nil && st.State != ChainIntact:
		st.State, st.Problem = ChainBroken, sc.broken.Error()+"; and "+st.Problem
	case sc.broken != nil:
		st.State, st.Problem = ChainBroken, sc.broken.Error()
	case st.State == ChainIntact && anchorMissing(aErr) && sc.records == 0:
		st.State, st.Problem = ChainEmpty, ""
	case st.State == ChainIntact && anchorMissing(aErr):
		st.Problem = fmt.Sprintf("no anchor file %s: the head cannot be checked (a database from before anchors, or the file was removed); the next append writes it", s.anchorPath())
	}
	return st, nil
}

// judgeAnchor compares an anchor (or the error reading it) with a chain
// whose head is headSeq and whose record at the anchor's seq has hash
// atAnchor ("" when there is no such record). A missing anchor is intact:
// there is nothing to compare.
func judgeAnchor(a anchor, aErr error, headSeq int64, atAnchor string) (ChainState, string) {
	switch {
	case anchorMissing(aErr):
		return ChainIntact, ""
	case aErr != nil:
		return ChainBroken, aErr.Error()
	case headSeq == 0:
		return ChainRestarted, fmt.Sprintf("the audit log is empty, but the anchor names record %d", a.Seq)
	case headSeq < a.Seq:
		return ChainTruncated, fmt.Sprintf("the chain ends at record %d, but the anchor names record %d (records were lost)", headSeq, a.Seq)
	case atAnchor != a.Hash:
		return ChainTruncated, fmt.Sprintf("record %d does not have the hash the anchor names (the records after an earlier point were lost and replaced)", a.Seq)
	}
	return ChainIntact, ""
}

// VerifyAudit walks the whole chain and returns the number of records checked,
// or an ErrAuditChain naming the first record that does not match. It does not
// consult the anchor; VerifyAuditChain does.
func (s *Store) VerifyAudit(ctx context.Context) (int64, error) {
	sc, err := s.scanChain(ctx, 0)
	if err != nil {
		return 0, err
	}
	if sc.broken != nil {
		return sc.good, sc.broken
	}
	return sc.records, nil
}

type chainScan struct {
	records  int64
	good     int64  // records before the first problem
	head     anchor // last row
	atAnchor string // hash of the row with seq == the wanted seq
	broken   error  // the first problem, wrapping ErrAuditChain
}

// scanChain reads every record once, in seq order, in one read transaction
// (a single query is a snapshot), checking each link; it keeps going after
// the first problem to find the real head.
func (s *Store) scanChain(ctx context.Context, wantSeq int64) (chainScan, error) {
	rows, err := s.reader.QueryContext(ctx,
		"SELECT seq, at, actor, action, target, detail, prev_hash, hash FROM audit ORDER BY seq")
	if err != nil {
		return chainScan{}, fmt.Errorf("verifying audit log: %w", err)
	}
	defer rows.Close()
	sc := chainScan{head: anchor{Hash: zeroHash}}
	var h hasher
	for rows.Next() {
		var r rawRecord
		if err := rows.Scan(&r.seq, &r.at, &r.actor, &r.action, &r.target, &r.detail, &r.prevHash, &r.hash); err != nil {
			return chainScan{}, fmt.Errorf("verifying audit log: %w", err)
		}
		if sc.broken == nil {
			sc.broken = h.check(&r, sc.head)
			if sc.broken == nil {
				sc.good++
			}
		}
		if r.seq == wantSeq {
			sc.atAnchor = string(r.hash)
		}
		sc.records++
		sc.head = anchor{Seq: r.seq, Hash: string(r.hash)}
	}
	if err := rows.Err(); err != nil {
		return chainScan{}, fmt.Errorf("verifying audit log: %w", err)
	}
	return sc, nil
}
