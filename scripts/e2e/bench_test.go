package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

// Serial console lines as systemd writes them (colours, a spinner's
// redraws, CRLF), with what multiUserReached must say of them.
var multiUserLines = []struct {
	raw  string
	want bool
}{
	// trixie's default StatusUnitFormat=combined
	{"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n", true},
	// a spinner's line redrawn, then the status line
	{"[\x1b[0;1;31m*    \x1b[0m] A start job is running for ... (5s / no limit)\r\x1b[K[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n", true},
	// StatusUnitFormat=description and =name
	{"[  OK  ] Reached target Multi-User System.\r\n", true},
	{"[  OK  ] Reached target multi-user.target.\n", true},
	// behind the kernel's time stamp, as a console may interleave them
	{"[   51.234567] [  OK  ] Reached target multi-user.target - Multi-User System.", true},
	{"[  OK  ] Reached target \x1b[0;1;39minitrd.target\x1b[0m - Initrd Default Target.\r\n", false},
	{"[  OK  ] Reached target graphical.target - Graphical Interface.", false},
	{"[  OK  ] Stopped target multi-user.target - Multi-User System.", false},
	{"         Stopping multi-user.target...", false},
	{"[  OK  ] Reached target multi-user.targets - Not It.", false},
	{"[  OK  ] Reached target Multi-User Systems.", false},
	{"Debian GNU/Linux 13 plain ttyS0", false},
	{"", false},
}

func TestMultiUserReached(t *testing.T) {
	for _, c := range multiUserLines {
		if got := multiUserReached(cleanLine(c.raw)); got != c.want {
			t.Errorf("multiUserReached(cleanLine(%q)) = %v, want %v (cleaned %q)", c.raw, got, c.want, cleanLine(c.raw))
		}
	}
}

func TestCleanLine(t *testing.T) {
	for raw, want := range map[string]string{
		"[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n": "[  OK  ] Reached target multi-user.target - Multi-User System.",
		"old state\rnew state\r\n":      "new state",
		"plain\n":                       "plain",
		"\x1b[?25l\x1b[2Jhidden cursor": "hidden cursor",
	} {
		if got := cleanLine(raw); got != want {
			t.Errorf("cleanLine(%q) = %q, want %q", raw, got, want)
		}
	}
}

func FuzzMultiUserReached(f *testing.F) {
	for _, c := range multiUserLines {
		f.Add(c.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s := cleanLine(raw)
		if strings.ContainsAny(s, "\r") || strings.HasSuffix(s, "\n") {
			t.Fatalf("cleanLine(%q) = %q keeps a line ending", raw, s)
		}
		got := multiUserReached(s)
		if got && !strings.Contains(s, "Reached target ") {
			t.Fatalf("%q matched without systemd's words", s)
		}
		// A time stamp or another prefix before the line changes nothing.
		if got != multiUserReached("[   12.345678] "+s) {
			t.Fatalf("%q: the answer depends on a prefix", s)
		}
	})
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{4, 2}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{9, 1, 2, 8}, 5},
	} {
		in := append([]float64(nil), c.xs...)
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
		for i := range in {
			if in[i] != c.xs[i] {
				t.Fatalf("median reordered its argument: %v", c.xs)
			}
		}
	}
}

// peFile builds a minimal PE image (no optional header) with the named
// sections, each padded to 512 bytes as a file alignment pads them.
func peFile(sections [][2]string) []byte {
	const lfanew = 0x40
	var b bytes.Buffer
	dos := make([]byte, lfanew)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], lfanew)
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	hdr := make([]byte, 20)
	binary.LittleEndian.PutUint16(hdr[0:], 0x8664) // x86-64
	binary.LittleEndian.PutUint16(hdr[2:], uint16(len(sections)))
	b.Write(hdr)
	dataAt := uint32(lfanew + 4 + 20 + 40*len(sections))
	dataAt = (dataAt + 511) &^ 511
	var data bytes.Buffer
	for i, s := range sections {
		sh := make([]byte, 40)
		copy(sh, s[0])
		binary.LittleEndian.PutUint32(sh[8:], uint32(len(s[1])))          // VirtualSize
		binary.LittleEndian.PutUint32(sh[12:], uint32(0x1000*(i+1)))      // VirtualAddress
		binary.LittleEndian.PutUint32(sh[16:], 512)                       // SizeOfRawData
		binary.LittleEndian.PutUint32(sh[20:], dataAt+uint32(data.Len())) // PointerToRawData
		b.Write(sh)
		pad := make([]byte, 512)
		copy(pad, s[1])
		data.Write(pad)
	}
	b.Write(make([]byte, int(dataAt)-b.Len()))
	b.Write(data.Bytes())
	return b.Bytes()
}

func TestUKIInfo(t *testing.T) {
	uki := peFile([][2]string{
		{".osrel", "ID=debian\n"},
		{".cmdline", "console=ttyS0,115200 systemd.show_status=1\x00"},
		{".uname", "6.12.48+deb13-amd64\x00"},
		{".linux", "not a kernel"},
	})
	kernel, cmdline, err := ukiInfo(bytes.NewReader(uki))
	if err != nil || kernel != "6.12.48+deb13-amd64" || cmdline != "console=ttyS0,115200 systemd.show_status=1" {
		t.Fatalf("ukiInfo = %q, %q, %v", kernel, cmdline, err)
	}
	for name, data := range map[string][]byte{
		"no .uname":   peFile([][2]string{{".cmdline", "rw"}}),
		"no .cmdline": peFile([][2]string{{".uname", "6.12"}}),
		"not PE":      []byte("MZ but nothing else"),
		"empty":       nil,
		"truncated":   uki[:300],
	} {
		if k, c, err := ukiInfo(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: ukiInfo = %q, %q, want an error", name, k, c)
		}
	}
}

func FuzzUKIInfo(f *testing.F) {
	uki := peFile([][2]string{{".cmdline", "rw quiet"}, {".uname", "6.12.48+deb13-amd64"}})
	f.Add(uki)
	f.Add(uki[:200])
	f.Add(peFile([][2]string{{".uname", "x"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		kernel, cmdline, err := ukiInfo(bytes.NewReader(data))
		if err != nil {
			return
		}
		if strings.ContainsRune(kernel, 0) || strings.ContainsRune(cmdline, 0) {
			t.Fatalf("NUL kept: %q, %q", kernel, cmdline)
		}
		if len(kernel) > 1<<20 || len(cmdline) > 1<<20 {
			t.Fatalf("section over the bound: %d, %d bytes", len(kernel), len(cmdline))
		}
		_ = utf8.ValidString(kernel)
	})
}
