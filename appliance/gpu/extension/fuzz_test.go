package extension

import (
	"encoding/json"
	"testing"
)

// FuzzParseManifest: any bytes are refused or give a manifest whose every
// field passed its check (re-encoding and parsing again agrees).
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"name":"omerta-nvidia","file":"omerta-nvidia.raw","size":74629120,"sha256":"f6c18ae60191b1dc16e6f10f2a98604dfadb21438a7f6b13f278b2f919b4dede","driver_version":"550.163.01","kernel":"6.12.118+deb13-amd64","modules":"open"}`))
	f.Add([]byte(`{"name":"x","file":"x.raw","size":-1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"name":"a","name":"a"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		again, _ := json.Marshal(m)
		if _, err := ParseManifest(again); err != nil {
			t.Fatalf("accepted %q but not its re-encoding: %v", data, err)
		}
	})
}

// FuzzParseState: the same for the state file first boot reads.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"outcome":"not-merged","reason":"no NVIDIA GPU on the PCI bus","forced":false,"gpus":[],"name":"omerta-nvidia","driver_version":"550.163.01","kernel":"6.12.118+deb13-amd64","modules":"open","sha256":"f6c18ae60191b1dc16e6f10f2a98604dfadb21438a7f6b13f278b2f919b4dede","at":"2026-12-02T00:00:00Z"}`))
	f.Add([]byte(`{"outcome":"merged","reason":"1 NVIDIA GPU on the PCI bus","gpus":["0000:1b:00.0"],"at":"2026-12-02T07:00:00Z"}`))
	f.Add([]byte(`{"outcome":"refused","reason":"r","at":"2026-12-02T07:00:00Z","at":"2026-12-02T07:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseState(data)
		if err != nil {
			return
		}
		again, _ := json.Marshal(s)
		if _, err := ParseState(again); err != nil {
			t.Fatalf("accepted %q but not its re-encoding: %v", data, err)
		}
	})
}
