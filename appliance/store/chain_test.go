package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func appendN(t testing.TB, s *Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := s.Audit(context.Background(), AuditEntry{Actor: "test", Action: "test.append", Target: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func verifyChain(t *testing.T, s *Store) ChainStatus {
	t.Helper()
	st, err := s.VerifyAuditChain(context.Background())
	if err != nil {
		t.Fatalf("VerifyAuditChain: %v", err)
	}
	return st
}

// rawExec changes a closed database around the store and its triggers, as
// someone with the file would.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range append([]string{"DROP TRIGGER IF EXISTS audit_no_update", "DROP TRIGGER IF EXISTS audit_no_delete"}, stmts...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func reopen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lostWAL commits 3 records into state.db and 4 more that stay in the WAL,
// then copies state.db and its anchor, but not the WAL, to a new directory:
// a WAL lost after SIGKILL.
func lostWAL(t *testing.T) string {
	t.Helper()
	s, _ := openTemp(t)
	appendN(t, s, 3)
	if _, err := s.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.Exec("PRAGMA wal_autocheckpoint = 0"); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 4)
	dst := filepath.Join(t.TempDir(), "state.db")
	for _, suffix := range []string{"", AnchorSuffix} {
		b, err := os.ReadFile(s.path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestVerifyAuditChainStates(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T) string // returns the path to reopen
		want    ChainState
		head    int64
		anchor  int64
		problem string
	}{
		{"empty", func(t *testing.T) string { _, p := openTemp(t); return p }, ChainEmpty, 0, 0, ""},
		{"intact", func(t *testing.T) string { s, p := openTemp(t); appendN(t, s, 5); return p }, ChainIntact, 5, 5, ""},
		{"lost WAL", lostWAL, ChainTruncated, 3, 7, "ends at record 3, but the anchor names record 7"},
		{"empty state.db", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 5)
			s.Close()
			for _, suffix := range []string{"-wal", "-shm"} {
				os.Remove(p + suffix)
			}
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, ChainRestarted, 0, 5, "empty, but the anchor names record 5"},
		{"state.db removed", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 2)
			s.Close()
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(p + suffix)
			}
			return p
		}, ChainRestarted, 0, 2, "anchor names record 2"},
		{"edited row", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 5)
			s.Close()
			rawExec(t, p, "UPDATE audit SET target = 'other' WHERE seq = 3")
			return p
		}, ChainBroken, 5, 5, "record 3: content does not match"},
		{"deleted last row", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 5)
			s.Close()
			rawExec(t, p, "DELETE FROM audit WHERE seq = 5")
			return p
		}, ChainTruncated, 4, 5, "ends at record 4"},
		{"last row edited and rehashed", func(t *testing.T) string {
			// Invisible to VerifyAudit: no later record links to it.
			s, p := openTemp(t)
			appendN(t, s, 3)
			var at, prev string
			if err := s.Read().QueryRow("SELECT at, prev_hash FROM audit WHERE seq = 3").Scan(&at, &prev); err != nil {
				t.Fatal(err)
			}
			s.Close()
			h := auditHash(3, at, "test", "test.append", "forged", "{}", prev)
			rawExec(t, p, "UPDATE audit SET target = 'forged', hash = '"+h+"' WHERE seq = 3")
			return p
		}, ChainTruncated, 3, 3, "record 3 does not have the hash the anchor names"},
		{"anchor lags", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 2)
			a, err := readAnchor(s.anchorPath())
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, s, 3)
			s.Close()
			writeSlotsT(t, p+AnchorSuffix, slot{gen: 1, anchor: a}, slot{})
			return p
		}, ChainIntact, 5, 2, ""},
		{"no anchor", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 2)
			s.Close()
			os.Remove(p + AnchorSuffix)
			return p
		}, ChainIntact, 2, 0, "no anchor file"},
		{"garbled anchor", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 2)
			s.Close()
			if err := os.WriteFile(p+AnchorSuffix, []byte("seq=99\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, ChainBroken, 2, 0, AnchorSuffix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := reopen(t, tt.setup(t))
			st := verifyChain(t, s)
			if st.State != tt.want || st.HeadSeq != tt.head || st.AnchorSeq != tt.anchor || !strings.Contains(st.Problem, tt.problem) {
				t.Fatalf("status = %+v\nwant state %s, head %d, anchor %d, problem containing %q", st, tt.want, tt.head, tt.anchor, tt.problem)
			}
			if (tt.problem == "") != (st.Problem == "") {
				t.Errorf("problem = %q, want one only when expected", st.Problem)
			}
			if st.Records != st.HeadSeq && tt.want != ChainBroken {
				t.Errorf("records = %d, head = %d", st.Records, st.HeadSeq)
			}
		})
	}
}

// TestResumeAfterDiscontinuity checks that the append after a truncated or
// restarted chain records the lost anchor in the chain, so the discontinuity
// stays visible after the anchor moves on.
func TestResumeAfterDiscontinuity(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name  string
		path  func(t *testing.T) string
		state ChainState
		seq   int64 // seq of the resume record
		lost  int64 // anchor seq it names
	}{
		{"truncated", lostWAL, ChainTruncated, 4, 7},
		{"restarted", func(t *testing.T) string {
			s, p := openTemp(t)
			appendN(t, s, 5)
			s.Close()
			os.Remove(p)
			return p
		}, ChainRestarted, 1, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := reopen(t, tt.path(t))
			if st := verifyChain(t, s); st.State != tt.state {
				t.Fatalf("before the append: %+v, want %s", st, tt.state)
			}
			if err := s.Audit(ctx, AuditEntry{Actor: "omertad", Action: "daemon.start"}); err != nil {
				t.Fatal(err)
			}
			st := verifyChain(t, s)
			if st.State != ChainIntact || st.HeadSeq != tt.seq+1 || st.AnchorSeq != tt.seq+1 {
				t.Fatalf("after the append: %+v, want intact at %d", st, tt.seq+1)
			}
			recs, err := s.AuditLog(ctx, tt.seq-1, 2)
			if err != nil || len(recs) != 2 {
				t.Fatalf("AuditLog = %v, %v", recs, err)
			}
			if recs[0].Action != ResumeAction || recs[1].Action != "daemon.start" {
				t.Fatalf("records %d, %d are %s, %s; want %s then daemon.start", recs[0].Seq, recs[1].Seq, recs[0].Action, recs[1].Action, ResumeAction)
			}
			var d struct {
				State     ChainState `json:"state"`
				AnchorSeq int64      `json:"anchor_seq"`
				HeadSeq   int64      `json:"head_seq"`
			}
			if err := json.Unmarshal(recs[0].Detail, &d); err != nil {
				t.Fatal(err)
			}
			if d.State != tt.state || d.AnchorSeq != tt.lost || d.HeadSeq != tt.seq-1 {
				t.Errorf("resume detail = %s, want state %s, anchor_seq %d, head_seq %d", recs[0].Detail, tt.state, tt.lost, tt.seq-1)
			}
			// Only the first append after the discontinuity records it.
			appendN(t, s, 2)
			if n, err := s.VerifyAudit(ctx); err != nil || n != tt.seq+3 {
				t.Errorf("VerifyAudit = %d, %v; want %d", n, err, tt.seq+3)
			}
		})
	}
}

func TestAuditTxNeedsWriteTransaction(t *testing.T) {
	s, _ := openTemp(t)
	tx, err := s.writer.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := s.AuditTx(context.Background(), tx, AuditEntry{Actor: "a", Action: "b"}); err == nil || !strings.Contains(err.Error(), "Store.Write") {
		t.Fatalf("AuditTx on a foreign transaction = %v, want a refusal", err)
	}
}

// TestRolledBackAuditLeavesAnchor: an append whose transaction rolls back
// must not move the anchor.
func TestRolledBackAuditLeavesAnchor(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	appendN(t, s, 2)
	err := s.Write(ctx, func(tx *sql.Tx) error {
		if err := s.AuditTx(ctx, tx, AuditEntry{Actor: "a", Action: "b"}); err != nil {
			return err
		}
		return fmt.Errorf("changed my mind")
	})
	if err == nil {
		t.Fatal("Write succeeded")
	}
	if st := verifyChain(t, s); st.State != ChainIntact || st.AnchorSeq != 2 || st.HeadSeq != 2 {
		t.Fatalf("after rollback: %+v", st)
	}
}

func writeSlotsT(t *testing.T, path string, a, b slot) {
	t.Helper()
	page := emptySlot()
	if a.gen > 0 {
		page = encodeSlot(a)
	}
	if b.gen > 0 {
		page = append(page, encodeSlot(b)...)
	} else {
		page = append(page, emptySlot()...)
	}
	if err := os.WriteFile(path, page, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAnchorSlots(t *testing.T) {
	h1, h2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	path := filepath.Join(t.TempDir(), "a")
	if err := writeAnchor(path, anchor{Seq: 1, Hash: h1}); err != nil {
		t.Fatal(err)
	}
	if err := writeAnchor(path, anchor{Seq: 2, Hash: h2}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sl, at, err := parseAnchor(b)
	if err != nil || at != 1 || sl.gen != 2 || sl.Seq != 2 || sl.Hash != h2 {
		t.Fatalf("after two writes: slot %d %+v, %v", at, sl, err)
	}
	// A torn write of slot 1 leaves slot 0, the previous head.
	copy(b[anchorSlot+30:], "XXXX")
	sl, at, err = parseAnchor(b)
	if err != nil || at != 0 || sl.Seq != 1 {
		t.Fatalf("torn slot 1: slot %d %+v, %v; want slot 0 at seq 1", at, sl, err)
	}
	// The next write replaces the damaged slot, not the good one.
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeAnchor(path, anchor{Seq: 3, Hash: h1}); err != nil {
		t.Fatal(err)
	}
	if a, err := readAnchor(path); err != nil || a.Seq != 3 {
		t.Fatalf("after repair: %+v, %v", a, err)
	}
	// Both slots damaged: an error, not a guess.
	copy(b[30:], "XXXX")
	if _, _, err := parseAnchor(b); err == nil || !strings.Contains(err.Error(), "slot 0") || !strings.Contains(err.Error(), "slot 1") {
		t.Fatalf("two torn slots: %v", err)
	}
	// A generation decides, not the seq: after a restart seq goes down.
	writeSlotsT(t, path, slot{gen: 7, anchor: anchor{Seq: 90, Hash: h1}}, slot{gen: 8, anchor: anchor{Seq: 2, Hash: h2}})
	if a, err := readAnchor(path); err != nil || a.Seq != 2 {
		t.Fatalf("newer generation with lower seq: %+v, %v", a, err)
	}
}

func TestAnchorRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	writeSlotsT(t, target, slot{gen: 1, anchor: anchor{Seq: 1, Hash: zeroHash}}, slot{})
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := readAnchor(link); err == nil || anchorMissing(err) {
		t.Fatalf("readAnchor(symlink) = %v, want a refusal", err)
	}
	if err := writeAnchor(link, anchor{Seq: 2, Hash: zeroHash}); err == nil {
		t.Fatal("writeAnchor followed a symlink")
	}
}

func FuzzParseAnchor(f *testing.F) {
	good := append(encodeSlot(slot{gen: 3, anchor: anchor{Seq: 12, Hash: strings.Repeat("ab", 32)}}), emptySlot()...)
	f.Add(good)
	f.Add(append(emptySlot(), encodeSlot(slot{gen: 9, anchor: anchor{Seq: 1, Hash: zeroHash}})...))
	f.Add([]byte{})
	f.Add([]byte("audit-head v1 gen=1 seq=1 hash=00 crc=00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sl, at, err := parseAnchor(b)
		if err != nil {
			return
		}
		if at < 0 || at >= anchorSlots || sl.Seq < 1 || sl.gen < 1 || !isHash(sl.Hash) {
			t.Fatalf("accepted an invalid anchor: slot %d %+v", at, sl)
		}
		again, _, err := parseAnchor(append(encodeSlot(sl), emptySlot()...))
		if err != nil || again != sl {
			t.Fatalf("round trip of %+v: %+v, %v", sl, again, err)
		}
	})
}

// BenchmarkVerifyAuditChain verifies a 10,000-record chain and reports the
// cost per record.
func BenchmarkVerifyAuditChain(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const records = 10000
	err = s.Write(ctx, func(tx *sql.Tx) error {
		for i := 0; i < records; i++ {
			e := AuditEntry{Actor: "omertad", Action: "probe.drift", Target: fmt.Sprintf("GPU %d", i%8),
				Detail: map[string]any{"kind": "gpu.lost", "before": "present", "after": "absent", "probe_id": i}}
			if err := s.AuditTx(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := s.VerifyAuditChain(ctx)
		if err != nil || st.State != ChainIntact || st.Records != records {
			b.Fatalf("%+v, %v", st, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
}

// BenchmarkAudit is the cost of one durable append, anchor included.
func BenchmarkAudit(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Audit(context.Background(), AuditEntry{Actor: "bench", Action: "bench.append"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnchorWrite is the anchor's share of BenchmarkAudit.
func BenchmarkAnchorWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.db"+AnchorSuffix)
	for i := 0; i < b.N; i++ {
		if err := writeAnchor(path, anchor{Seq: int64(i + 1), Hash: zeroHash}); err != nil {
			b.Fatal(err)
		}
	}
}
