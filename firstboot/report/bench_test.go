package report

import (
	"crypto/ed25519"
	"fmt"
	"testing"
)

// bigReport has n records, about the control count of the enterprise profile
// times two, to show that sealing and verifying stay cheap on first boot.
func bigReport(n int) *Report {
	r := testReport()
	base := r.Records
	r.Records = nil
	for i := range n {
		rec := base[i%len(base)]
		rec.ID = fmt.Sprintf("%s.%d", rec.ID, i)
		r.Records = append(r.Records, rec)
	}
	return r
}

func BenchmarkSeal300(b *testing.B) {
	key := testKey(b)
	for b.Loop() {
		if err := Seal(bigReport(300), key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify300(b *testing.B) {
	r := bigReport(300)
	if err := Seal(r, testKey(b)); err != nil {
		b.Fatal(err)
	}
	data, _ := Marshal(r)
	pub := testKey(b).Public().(ed25519.PublicKey)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Verify(data, pub); err != nil {
			b.Fatal(err)
		}
	}
}
