package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// referenceHash is the definition auditHash must match byte for byte: the
// encoding every chain written so far was hashed with.
func referenceHash(seq int64, at, actor, action, target, detail, prev string) string {
	b, _ := json.Marshal([]any{seq, at, actor, action, target, json.RawMessage(detail), prev})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func FuzzAuditHashMatchesMarshal(f *testing.F) {
	f.Add(int64(1), "2026-11-26T02:00:01Z", "omertad", "probe.drift", "GPU 3", `{"kind":"gpu.lost","n":1}`, zeroHash)
	f.Add(int64(7), "x", "a\"b\\c", "<script>&", "\u2028\u2029\x00\x7f\xff", `{ "a" : [1, 2,  "<&>"] }`, "")
	f.Add(int64(-3), "\n\t\r\b\f", "é", "\xe2\x80", "z", `not json`, "h")
	f.Add(int64(2), "", "", "", "", `"\u2028 \xe2\x80\xa9"`, "")
	f.Add(int64(0), "", "", "", "", ``, "")
	f.Fuzz(func(t *testing.T, seq int64, at, actor, action, target, detail, prev string) {
		if got, want := auditHash(seq, at, actor, action, target, detail, prev), referenceHash(seq, at, actor, action, target, detail, prev); got != want {
			t.Fatalf("auditHash = %s, json.Marshal gives %s", got, want)
		}
	})
}

func BenchmarkAuditHash(b *testing.B) {
	detail := `{"after":"absent","before":"present","kind":"gpu.lost","probe_id":42}`
	b.Run("hasher", func(b *testing.B) {
		var h hasher
		for i := 0; i < b.N; i++ {
			h.sum(42, []byte("2026-11-26T02:00:01.123456789Z"), []byte("omertad"), []byte("probe.drift"), []byte("GPU 3"), []byte(detail), []byte(zeroHash))
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			referenceHash(42, "2026-11-26T02:00:01.123456789Z", "omertad", "probe.drift", "GPU 3", detail, zeroHash)
		}
	})
}
