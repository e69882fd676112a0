package main

import "testing"

// The lines are the guest's serial console of a make e2e run (escape
// sequences removed as cleanLine removes them).
func TestExtensionUnitStarted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  bool
	}{
		{"starting", []string{"         Starting omerta-nvidia-extension.s…(merged only with an NVIDIA GPU)..."}, true},
		{"running job", []string{"[***   ] (1 of 4) Job omerta-nvidia-extensio…start running (1min 1s / 5min 45s)"}, true},
		{"finished", []string{"[  OK  ] Finished omerta-nvidia-extension.s…n (merged only with an NVIDIA GPU)."}, true},
		{"masked: not on the console", []string{
			"[  OK  ] Finished systemd-sysusers.service - Create System Users.",
			"[  OK  ] Reached target sysinit.target - System Initialization.",
			"omerta-firstboot: step 3/9 probe: NVIDIA driver installed, no NVIDIA GPU found",
		}, false},
		{"nothing", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lines []line
			for _, s := range tc.lines {
				lines = append(lines, line{Text: s})
			}
			if got := extensionUnitStarted(lines); got != tc.want {
				t.Fatalf("extensionUnitStarted = %v, want %v", got, tc.want)
			}
		})
	}
}
