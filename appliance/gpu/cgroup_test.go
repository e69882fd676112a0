package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCgroupFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []CgroupEntry
		err  string
	}{
		{"v2", "0::/omerta/a-g1\n", []CgroupEntry{{Path: "/omerta/a-g1"}}, ""},
		{"v1", "12:memory:/omerta/a-g1\n3:cpu,cpuacct:/omerta/a-g1\n1:name=systemd:/system.slice/containerd.service\n0::/\n",
			[]CgroupEntry{{12, []string{"memory"}, "/omerta/a-g1", false}, {3, []string{"cpu", "cpuacct"}, "/omerta/a-g1", false},
				{1, []string{"name=systemd"}, "/system.slice/containerd.service", false}, {0, nil, "/", false}}, ""},
		{"deleted", "0::/omerta/a-g1 (deleted)\n", []CgroupEntry{{Path: "/omerta/a-g1", Deleted: true}}, ""},
		{"colon in the path", "0::/a:b\n", []CgroupEntry{{Path: "/a:b"}}, ""},
		{"empty (kernel thread)", "", nil, ""},
		{"relative", "0::omerta/a\n", nil, "path omerta/a is not absolute"},
		{"climbing", "0::/omerta/a-g1/../b\n", nil, "a . or .. segment"},
		{"no fields", "/omerta/a-g1\n", nil, "is not hierarchy:controllers:path"},
		{"bad hierarchy", "x::/a\n", nil, "hierarchy x is not a small number"},
		{"signed hierarchy", "+1::/a\n", nil, "is not a small number"},
		{"blank line inside", "0::/a\n\n0::/b\n", nil, "line 2"},
		{"control bytes", "0::/a\x1b[2J\n", nil, `"0::/a\x1b[2J"`},
		{"too many lines", strings.Repeat("0::/a\n", maxCgroupLines+1), nil, "more than 64 lines"},
		{"too large", strings.Repeat("x", maxCgroupFile+1), nil, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCgroupFile([]byte(tc.in))
			if tc.err != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMatchCgroup(t *testing.T) {
	cgroups := map[string]string{"/omerta/a-g1": "a", "/omerta/a-g1/inner": "inner", "/omerta/b-g2": "b"}
	for path, want := range map[string]string{
		"/omerta/a-g1":             "a",
		"/omerta/a-g1/x":           "a",
		"/omerta/a-g1/inner/x":     "inner", // the longest match
		"/omerta/a-g10":            "",      // not below /omerta/a-g1
		"/omerta":                  "",
		"/system.slice/x.service":  "",
		"/omerta/b-g2/../../a-g1x": "b", // never produced: ParseCgroupFile refuses .. first
	} {
		got, ok := matchCgroup([]CgroupEntry{{Path: path}}, cgroups)
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q, %v; want %q", path, got, ok, want)
		}
	}
}
