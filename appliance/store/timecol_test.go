package store

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
)

func TestTimeColumns(t *testing.T) {
	local := time.Date(2026, 11, 26, 3, 0, 0, 120, time.FixedZone("CET", 3600))
	s := FormatTime(local)
	if s != "2026-11-26T02:00:00.00000012Z" {
		t.Fatalf("FormatTime = %q", s)
	}
	got, err := ParseTime("t", "c", s)
	if err != nil || !got.Equal(local) || got.Location() != time.UTC {
		t.Fatalf("ParseTime(%q) = %v, %v", s, got, err)
	}
	if FormatNullTime(time.Time{}) != nil {
		t.Error("FormatNullTime(zero) is not NULL")
	}
	if got, err := ParseNullTime("t", "c", sql.NullString{}); err != nil || !got.IsZero() {
		t.Errorf("ParseNullTime(NULL) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "yesterday", "2026-11-26", "2026-11-26 02:00:00", strings.Repeat("9", 200)} {
		_, err := ParseTime("probe_drift", "at", bad)
		if err == nil || !strings.Contains(err.Error(), "probe_drift.at") {
			t.Errorf("ParseTime(%.20q) = %v, want an error naming probe_drift.at", bad, err)
		}
	}
}

// TestAuditLogBadTime: a record whose time is not a stored time is an
// error naming audit.at, not a zero time.
func TestAuditLogBadTime(t *testing.T) {
	s, path := openTemp(t)
	appendN(t, s, 1)
	s.Close()
	rawExec(t, path, "UPDATE audit SET at = 'soon' WHERE seq = 1")
	s = reopen(t, path)
	if _, err := s.AuditLog(context.Background(), 0, 10); err == nil || !strings.Contains(err.Error(), "audit.at") {
		t.Fatalf("AuditLog = %v, want an error naming audit.at", err)
	}
}

func FuzzParseTime(f *testing.F) {
	f.Add("2026-11-26T02:00:00.00000012Z")
	f.Add("2026-11-26T03:00:00+01:00")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, v string) {
		got, err := ParseTime("t", "c", v)
		if err != nil {
			return
		}
		again, err := ParseTime("t", "c", FormatTime(got))
		if err != nil || !again.Equal(got) {
			t.Fatalf("round trip of %q: %v, %v", v, again, err)
		}
	})
}

func TestIsUnique(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	appendN(t, s, 1)
	var hash string
	if err := s.Read().QueryRow("SELECT hash FROM audit WHERE seq = 1").Scan(&hash); err != nil {
		t.Fatal(err)
	}
	insert := func(seq int, h string) error {
		return s.Write(ctx, func(tx *sql.Tx) error {
			_, err := tx.Exec("INSERT INTO audit(seq, at, actor, action, prev_hash, hash) VALUES (?, 'x', 'a', 'b', '', ?)", seq, h)
			return err
		})
	}
	if err := insert(2, hash); !IsUnique(err) {
		t.Errorf("duplicate hash: IsUnique(%v) = false", err)
	}
	// A primary key clash is a different constraint.
	if err := insert(1, "fresh"); err == nil || IsUnique(err) {
		t.Errorf("duplicate seq: IsUnique(%v) = true, want false", err)
	}
	if IsUnique(nil) {
		t.Error("IsUnique(nil)")
	}
}
