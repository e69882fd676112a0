package manifest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// badCase is one file of testdata/bad with the problems it must produce
// (from its "# want: PATH [CODE]" lines) and what the JSON Schema makes of
// it ("# schema: refuses|accepts|unparsed").
type badCase struct {
	file   string
	data   []byte
	want   []string // "PATH [CODE]", sorted
	schema string
}

var wantRe = regexp.MustCompile(`^# want: (.*) \[([a-z-]+)\]$`)

func loadBad(t *testing.T) []badCase {
	t.Helper()
	files, err := filepath.Glob("testdata/bad/*")
	if err != nil {
		t.Fatal(err)
	}
	var cases []badCase
	for _, f := range files {
		if strings.HasSuffix(f, ".want") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		header := data
		if strings.HasSuffix(f, ".json") {
			if header, err = os.ReadFile(f + ".want"); err != nil {
				t.Fatal(err)
			}
		}
		c := badCase{file: filepath.Base(f), data: data}
		for _, line := range strings.Split(string(header), "\n") {
			if m := wantRe.FindStringSubmatch(line); m != nil {
				c.want = append(c.want, m[1]+" ["+m[2]+"]")
			}
			if s, ok := strings.CutPrefix(line, "# schema: "); ok {
				c.schema = s
			}
		}
		if len(c.want) == 0 || c.schema == "" {
			t.Fatalf("%s: no # want: or # schema: lines", f)
		}
		sort.Strings(c.want)
		cases = append(cases, c)
	}
	if len(cases) < 40 {
		t.Fatalf("only %d bad cases found", len(cases))
	}
	return cases
}

// TestBadManifests: each bad manifest is refused with exactly the problems
// its file lists, each naming the field, and none other.
func TestBadManifests(t *testing.T) {
	for _, c := range loadBad(t) {
		t.Run(c.file, func(t *testing.T) {
			m, err := Parse(c.data)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v, %v; want Problems", m, err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.Path+" ["+string(p.Code)+"]")
				if p.Reason == "" {
					t.Errorf("%s: empty reason", p.Path)
				}
				if i, r := firstUnsafe(p.Reason); i >= 0 {
					t.Errorf("%s: reason %q holds %U raw", p.Path, p.Reason, r)
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s\nfull:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"), ps.Error())
			}
		})
	}
}

func firstUnsafe(s string) (int, rune) {
	for i, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x202e {
			return i, r
		}
	}
	return -1, 0
}

// TestGoodManifests compares each good manifest's normalised form with its
// golden file, and checks that the normalised form parses back to itself.
func TestGoodManifests(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.*")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			out, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(f, filepath.Ext(f))+".golden", out)
			again := reparse(t, out)
			if !bytes.Equal(again, out) {
				t.Errorf("normalising twice changed the output:\n%s", again)
			}
		})
	}
	if n < 4 {
		t.Fatalf("only %d good manifests", n)
	}
}

// reparse parses normalised output again; redacted secrets are put back as
// plain strings so that the configuration still validates.
func reparse(t *testing.T, out []byte) []byte {
	t.Helper()
	m, err := Parse(out)
	if err != nil {
		t.Fatalf("normalised output does not parse: %v\n%s", err, out)
	}
	again, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return again
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func compileManifestSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource("manifest.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("manifest.schema.json")
	if err != nil {
		t.Fatalf("the published schema does not compile: %v", err)
	}
	return sch
}

// TestSchemaAgrees holds the published JSON Schema to Check: every good
// manifest (and its normalised form) is valid under the schema; every bad
// one that the schema can judge is refused by it, and those whose rule only
// Check knows (bounds, uniqueness, config against configSchema) are marked
// "accepts" and are in fact accepted, so the marks cannot drift.
func TestSchemaAgrees(t *testing.T) {
	sch := compileManifestSchema(t)
	files, _ := filepath.Glob("testdata/good/*.*")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		tree, err := ParseTree(data, Limits())
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(tree); err != nil {
			t.Errorf("%s: good manifest refused by the schema: %v", f, err)
		}
	}
	for _, c := range loadBad(t) {
		tree, err := ParseTree(c.data, Limits())
		switch {
		case c.schema == "unparsed":
			if err == nil {
				t.Errorf("%s: marked unparsed but parses", c.file)
			}
			continue
		case err != nil:
			t.Errorf("%s: does not parse: %v", c.file, err)
			continue
		}
		verr := sch.Validate(tree)
		switch c.schema {
		case "refuses":
			if verr == nil {
				t.Errorf("%s: the schema accepts what Check refuses", c.file)
			}
		case "accepts":
			if verr != nil {
				t.Errorf("%s: marked accepts (a rule only Check knows) but the schema refuses: %v", c.file, verr)
			}
		default:
			t.Errorf("%s: schema: %q is not refuses, accepts or unparsed", c.file, c.schema)
		}
	}
}
