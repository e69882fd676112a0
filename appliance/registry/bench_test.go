package registry

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bigRegistry writes a signed registry of n entries: model manifests, a
// few agents and a 1 MiB blob every tenth entry, the shape of a site's
// registry.
func bigRegistry(b *testing.B, n int) (string, *Keyring) {
	b.Helper()
	pub, priv := testKey(b, "test")
	dir := b.TempDir()
	var idx strings.Builder
	idx.WriteString("registry_version: \"1.0\"\ncatalog:\n  models:\n")
	var files []string
	for i := range n {
		switch {
		case i%10 == 9:
			p := fmt.Sprintf("files/blob-%03d.bin", i)
			writeFile(b, filepath.Join(dir, p), []byte(strings.Repeat(fmt.Sprintf("%07d\n", i), 1<<17)))
			files = append(files, p)
		default:
			p := fmt.Sprintf("models/bench/model-%03d.yaml", i)
			writeFile(b, filepath.Join(dir, p), []byte(strings.Replace(goodModel, "name: tiny", fmt.Sprintf("name: model-%03d", i), 1)))
			fmt.Fprintf(&idx, "    - path: %s\n", p)
		}
	}
	idx.WriteString("  files:\n")
	for _, p := range files {
		fmt.Fprintf(&idx, "    - path: %s\n", p)
	}
	writeFile(b, filepath.Join(dir, IndexFile), []byte(idx.String()))
	lock, fs, err := BuildLock(context.Background(), dir, time.Now())
	if err != nil || lock == nil {
		b.Fatalf("BuildLock: %v %v", err, fs)
	}
	data, _ := MarshalLock(lock)
	writeFile(b, filepath.Join(dir, LockFile), data)
	writeFile(b, filepath.Join(dir, SignatureFile), Sign(data, priv))
	return dir, NewKeyring(pub)
}

// BenchmarkVerify100: a full verification of a 100-entry registry (90
// manifests, 10 blobs of 1 MiB): every file hashed, every manifest
// parsed and checked, the signature verified.
func BenchmarkVerify100(b *testing.B) {
	dir, trust := bigRegistry(b, 100)
	r, err := Verify(context.Background(), dir, trust)
	if err != nil || !r.OK() || r.LockEntries != 100 {
		b.Fatalf("%v %+v", err, r.Counts)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(context.Background(), dir, trust); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/registry")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100/1e3, "µs/entry")
}

// BenchmarkCheckModel: one admission check (the lock read and its
// signature verified, one manifest hashed and checked) in the same
// registry.
func BenchmarkCheckModel(b *testing.B) {
	dir, trust := bigRegistry(b, 100)
	v := NewVerifier(VerifierConfig{Profile: "enterprise", Trust: trust, Registries: []string{dir}})
	gpus := []GPU{{Name: "NVIDIA L4", TotalBytes: 24e9, FreeBytes: 20e9}}
	if d := v.CheckModel(context.Background(), "model-042", gpus); !d.Allowed {
		b.Fatalf("%+v", d)
	}
	for b.Loop() {
		v.CheckModel(context.Background(), "model-042", gpus)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/check")
}
