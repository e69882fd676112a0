package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

const imageLine = "rw console=tty0 console=ttyS0,115200 loglevel=4 systemd.firstboot=off audit=1 audit_backlog_limit=8192 panic=10 iommu=force pti=on"

func TestVariantsOf(t *testing.T) {
	vs := variantsOf(imageLine)
	got := map[string]variant{}
	for _, v := range vs {
		got[v.name] = v
	}
	if len(vs) != 5 {
		t.Fatalf("%d variants, want image, stock and three without: %+v", len(vs), vs)
	}
	if got["stock"].cmdline != "rw console=tty0 console=ttyS0,115200 loglevel=4 systemd.firstboot=off panic=10" {
		t.Errorf("stock = %q", got["stock"].cmdline)
	}
	a := got["without audit"]
	if a.without != "audit=1 audit_backlog_limit=8192" || strings.Contains(a.cmdline, "audit") || !strings.Contains(a.cmdline, "pti=on") {
		t.Errorf("without audit = %+v", a)
	}
	if p := got["without pti=on"]; strings.Contains(p.cmdline, "pti") || !strings.Contains(p.cmdline, "iommu=force") {
		t.Errorf("without pti = %+v", p)
	}
}

func TestParseSerial(t *testing.T) {
	serial := "[    0.000000] Linux version 6.12\r\n" +
		"omerta-bench: boot 17.40\r\n" +
		"omerta-bench: exec 17.50 25.19\n" +
		"omerta-bench: syscalls 25.19 37.38\n" +
		"omerta-bench: pages 37.38 52.30\n" +
		"omerta-bench: done\n"
	s, err := parseSerial(strings.NewReader(serial))
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(s.Boot, 17.4) || !near(s.Exec, 7.69) || !near(s.Syscalls, 12.19) || !near(s.Pages, 14.92) {
		t.Errorf("parsed %+v", s)
	}
	for name, bad := range map[string]string{
		"no done":   "omerta-bench: boot 1\n",
		"not a num": "omerta-bench: exec 1 \x1b[2J\nomerta-bench: done\n",
		"unknown":   "omerta-bench: rm -rf 1 2\nomerta-bench: done\n",
		"negative":  "omerta-bench: boot -3\nomerta-bench: done\n",
	} {
		_, err := parseSerial(strings.NewReader(bad))
		if err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
		if name == "no done" && !errors.Is(err, errNoResult) {
			t.Errorf("no done: %v, want errNoResult", err)
		}
	}
}

func TestSummarise(t *testing.T) {
	vs := variantsOf("console=ttyS0 pti=on")
	samples := map[string][]sample{
		"image":          {{Boot: 10, Exec: 4, Syscalls: 12, Pages: 2}, {Boot: 12, Exec: 4, Syscalls: 12, Pages: 2}, {Boot: 30, Exec: 4, Syscalls: 12, Pages: 2}},
		"stock":          {{Boot: 8, Exec: 4, Syscalls: 1, Pages: 2}},
		"without pti=on": {{Boot: 8, Exec: 4, Syscalls: 1, Pages: 2}},
	}
	res := summarise("console=ttyS0 pti=on", options{accel: "tcg", rounds: 3}, vs, samples)
	if res.Medians["image"].Boot != 12 {
		t.Errorf("median boot %v, want 12", res.Medians["image"].Boot)
	}
	if len(res.Costs) != 1 || res.Costs[0].Param != "pti=on" || res.Costs[0].Syscalls != 11 || res.Costs[0].Boot != 0.5 {
		t.Errorf("costs %+v", res.Costs)
	}
}

func FuzzParseSerial(f *testing.F) {
	f.Add("omerta-bench: boot 1\nomerta-bench: exec 1 2\nomerta-bench: done\n")
	f.Add("omerta-bench: \nomerta-bench: done")
	f.Fuzz(func(t *testing.T, serial string) {
		s, err := parseSerial(strings.NewReader(serial))
		if err == nil && (s.Boot < 0 || s.Boot > 1e6) {
			t.Fatalf("accepted boot %v", s.Boot)
		}
	})
}

// TestTCGCPUAsQEMUScript keeps the bench's guests on the CPU the e2e's
// guests get: a parameter's cost under TCG depends on it (ERMS).
func TestTCGCPUAsQEMUScript(t *testing.T) {
	b, err := os.ReadFile("../qemu.sh")
	if err != nil {
		t.Fatal(err)
	}
	want := "tcg) cpu=" + tcgCPU + ";"
	if !strings.Contains(string(b), want) {
		t.Errorf("scripts/qemu.sh has no line with %q: the bench and the e2e would boot different CPUs", want)
	}
}
