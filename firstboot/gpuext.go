package firstboot

import (
	"errors"
	"io/fs"
	"strings"
	"unicode/utf8"

	"github.com/omertaos/omertaos/appliance/gpu/extension"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/firstboot/report"
)

// maxUnreadableReason bounds the reason of an unreadable state file: its
// error may quote some of the file.
const maxUnreadableReason = 1024

// gpuExtension is header.gpu_extension: what `omerta gpu extension merge`
// recorded at this boot (extension.StatePath, read bounded and strictly by
// extension.ReadState). It is nil when nothing was recorded (an image
// without the NVIDIA extension, or the unit did not run), and has outcome
// "unreadable", with the error as its reason, when the file is there but
// is not a state file merge could have written: the report says so rather
// than dropping it.
func gpuExtension(root rootfs.Root) *report.GPUExtension {
	s, err := extension.ReadState(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &report.GPUExtension{Outcome: report.GPUExtensionUnreadable, Reason: truncate(err.Error(), maxUnreadableReason)}
	}
	return &report.GPUExtension{Outcome: s.Outcome, Reason: s.Reason, Forced: s.Forced,
		DriverVersion: s.DriverVersion, Modules: s.Modules, Kernel: s.Kernel, SHA256: s.SHA256}
}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.TrimSpace(s) + "…"
}
