package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

type tarMember struct {
	name, body string
	typ        byte
}

func tarOf(t testing.TB, members ...tarMember) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Typeflag: typ, Mode: 0o644, ModTime: fixtureTime}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		} else {
			hdr.Linkname = m.body
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const layoutBody = `{"imageLayoutVersion":"1.0.0"}`

func indexOf(digests ...string) string {
	var ms []string
	for _, d := range digests {
		ms = append(ms, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":405,"digest":"`+d+`"}`)
	}
	return `{"schemaVersion":2,"manifests":[` + strings.Join(ms, ",") + `]}`
}

// TestArchiveDigest: the digest is the one manifest of the archive's OCI
// index; an archive that is no OCI layout has none (the old lock's digest
// stays); an OCI layout whose index cannot be used is refused, saying why.
func TestArchiveDigest(t *testing.T) {
	other := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
		refused string // part of the refusal; "" for none
	}{
		{"oci layout", tarOf(t, tarMember{name: "oci-layout", body: layoutBody}, tarMember{name: "index.json", body: indexOf(fixtureImageHash)}), fixtureImageHash, ""},
		{"index first, ./ prefix", tarOf(t, tarMember{name: "./index.json", body: indexOf(other)}, tarMember{name: "oci-layout", body: layoutBody}), other, ""},
		{"docker save archive", tarOf(t, tarMember{name: "manifest.json", body: `[]`}), "", ""},
		{"not a tar", bytes.Repeat([]byte("not a tar archive "), 64), "", ""},
		{"empty file", nil, "", ""},
		{"layout without index", tarOf(t, tarMember{name: "oci-layout", body: layoutBody}), "", "without index.json"},
		{"two manifests", tarOf(t, tarMember{name: "index.json", body: indexOf(fixtureImageHash, other)}), "", "names 2 manifests"},
		{"no manifest", tarOf(t, tarMember{name: "index.json", body: indexOf()}), "", "names 0 manifests"},
		{"placeholder digest", tarOf(t, tarMember{name: "index.json", body: indexOf("sha256:" + strings.Repeat("0", 64))}), "", "placeholder"},
		{"md5 digest", tarOf(t, tarMember{name: "index.json", body: indexOf("sha256:" + strings.Repeat("a", 32))}), "", "MD5"},
		{"schema 1", tarOf(t, tarMember{name: "index.json", body: `{"schemaVersion":1,"manifests":[]}`}), "", "schemaVersion"},
		{"trailing data", tarOf(t, tarMember{name: "index.json", body: indexOf(other) + ` {}`}), "", "after its JSON"},
		{"index is a symlink", tarOf(t, tarMember{name: "index.json", body: "/etc/passwd", typ: tar.TypeSymlink}), "", "not a regular file"},
		{"index too large", tarOf(t, tarMember{name: "index.json", body: indexOf(other) + strings.Repeat(" ", maxOCIIndex)}), "", "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "images/a.oci.tar"), tc.archive)
			d, err := openDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got, err := archiveDigest(context.Background(), d, "images/a.oci.tar", DefaultLimits())
			var fe *fileError
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && (!errors.As(err, &fe) || fe.Code != CodeRefusedFile || !strings.Contains(err.Error(), tc.refused)):
				t.Fatalf("err %v, want a refused-file naming %q", err, tc.refused)
			case got != tc.want:
				t.Fatalf("digest %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBuildLockReadsArchiveDigest: the lock pins the digest the archive
// names, over an old lock's other one, and a broken OCI index is a finding
// that stops the build.
func TestBuildLockReadsArchiveDigest(t *testing.T) {
	dir, _ := ours(t)
	other := "sha256:" + strings.Repeat("cd", 32)
	writeFile(t, filepath.Join(dir, "images/web.oci.tar"), tarOf(t, tarMember{name: "oci-layout", body: layoutBody}, tarMember{name: "index.json", body: indexOf(other)}))
	lock, fs, err := BuildLock(context.Background(), dir, fixtureTime)
	if err != nil || lock == nil {
		t.Fatalf("%v %v", err, fs)
	}
	for _, e := range lock.Entries {
		if e.Kind == KindImage && e.Digest != other {
			t.Errorf("image %s: digest %q, want the archive's %q", e.Path, e.Digest, other)
		}
	}
	writeFile(t, filepath.Join(dir, "images/web.oci.tar"), tarOf(t, tarMember{name: "oci-layout", body: layoutBody}, tarMember{name: "index.json", body: indexOf(other, fixtureImageHash)}))
	lock, fs, err = BuildLock(context.Background(), dir, fixtureTime)
	if err != nil || lock != nil || !failed(fs) {
		t.Fatalf("two manifests: lock %v, findings %v, err %v", lock, fs, err)
	}
}

func FuzzParseOCIIndex(f *testing.F) {
	f.Add([]byte(indexOf(fixtureImageHash)))
	f.Add([]byte(indexOf()))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:x"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseOCIIndex(data)
		if err == nil && ociDigestProblem(d) != "" {
			t.Fatalf("accepted %q", d)
		}
		if err != nil && d != "" {
			t.Fatalf("digest %q with error %v", d, err)
		}
	})
}
