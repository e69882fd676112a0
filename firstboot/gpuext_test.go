package firstboot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/omertaos/omertaos/appliance/gpu/extension"
	"github.com/omertaos/omertaos/firstboot/report"
)

// header.gpu_extension copies the merge's state file, is absent without
// one, and says "unreadable" for one merge could not have written.
func TestReportGPUExtension(t *testing.T) {
	const merged = `{"outcome":"merged","reason":"8 NVIDIA GPUs on the PCI bus","forced":false,"gpus":["0000:1b:00.0"],"name":"omerta-nvidia","driver_version":"550.163.01","kernel":"6.12.57+deb13-amd64","modules":"open","sha256":"` + "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e" + `","at":"2026-12-02T07:00:00Z"}`
	for _, tc := range []struct {
		name  string
		setup func(p string)
		want  *report.GPUExtension
		why   string
	}{
		{"no state file", nil, nil, ""},
		{"merged", func(p string) { os.WriteFile(p, []byte(merged), 0o644) },
			&report.GPUExtension{Outcome: "merged", Reason: "8 NVIDIA GPUs on the PCI bus", DriverVersion: "550.163.01", Modules: "open", Kernel: "6.12.57+deb13-amd64", SHA256: strings.Repeat("5e", 32)}, ""},
		{"foreign member", func(p string) {
			os.WriteFile(p, []byte(strings.Replace(merged, `"forced"`, `"evil":1,"forced"`, 1)), 0o644)
		},
			nil, `unknown field "evil"`},
		{"a FIFO", func(p string) { syscall.Mkfifo(p, 0o644) }, nil, "FIFO"},
		{"oversized", func(p string) { os.WriteFile(p, []byte(strings.Repeat(" ", 1<<20)), 0o644) }, nil, "larger than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newTestRoot(t, nil)
			if tc.setup != nil {
				p := under(root, extension.StatePath)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				tc.setup(p)
			}
			if _, err := Run(context.Background(), testOptions(root, nil)); err != nil {
				t.Fatal(err)
			}
			got := readReport(t, root).Header.GPUExtension
			switch {
			case tc.why != "":
				if got == nil || got.Outcome != report.GPUExtensionUnreadable || !strings.Contains(got.Reason, tc.why) || got.DriverVersion != "" {
					t.Fatalf("gpu_extension = %+v, want unreadable: %s", got, tc.why)
				}
			case (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want):
				t.Fatalf("gpu_extension = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("ab€", 4); got != "ab…" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("abc", 3); got != "abc" {
		t.Errorf("truncate = %q", got)
	}
}
