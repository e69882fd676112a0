package firstboot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

// identityData is what the identity step journals.
type identityData struct {
	Hostname  string `json:"hostname"`
	MachineID string `json:"machine_id"`
	// MachineIDGenerated is true when first boot wrote /etc/machine-id
	// itself (an image tree or a temp root, never a live system).
	MachineIDGenerated bool `json:"machine_id_generated,omitempty"`
}

var (
	machineIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hostnameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

func (r *runner) identity() (identityData, error) {
	var id identityData
	ok, err := r.j.decode(StepIdentity, &id)
	if err == nil && !ok {
		err = errors.New("the identity step has not run")
	}
	return id, err
}

// stepIdentity checks /etc/machine-id and settles the hostname.
//
// On a live system systemd has put a valid machine-id in place before any
// unit runs (on a first boot the file on disk says "uninitialized" and a
// transient id is mounted over it), so anything else there is an error. An
// image tree or a temp root has nobody to do that, so first boot writes one,
// as systemd-machine-id-setup --root would.
func (r *runner) stepIdentity(ctx context.Context) (any, string, error) {
	sd, err := r.site()
	if err != nil {
		return nil, "", err
	}
	var id identityData
	raw, err := r.fs.ReadFile(MachineIDPath, smallFileLimit)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("machine-id: %w", err)
	}
	mid := strings.TrimSpace(string(raw))
	switch {
	case machineIDRE.MatchString(mid) && strings.Trim(mid, "0") != "":
		id.MachineID = mid
	case r.opts.Live:
		return nil, "", fmt.Errorf("machine-id: %s holds %q, not 32 lowercase hex digits; systemd should have initialised it before first boot", MachineIDPath, abbreviate(mid))
	case mid == "" || mid == "uninitialized":
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, "", fmt.Errorf("machine-id: %w", err)
		}
		// A v4 UUID, as systemd generates.
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		id.MachineID = hex.EncodeToString(b[:])
		id.MachineIDGenerated = true
		if _, err := r.fs.WriteFile(MachineIDPath, []byte(id.MachineID+"\n"), 0o444); err != nil {
			return nil, "", fmt.Errorf("machine-id: %w", err)
		}
	default:
		return nil, "", fmt.Errorf("machine-id: %s holds %q, not 32 lowercase hex digits", MachineIDPath, abbreviate(mid))
	}
	r.mid()

	id.Hostname = sd.Config.Hostname
	if id.Hostname == "" {
		cur, _ := r.fs.ReadFile(HostnamePath, smallFileLimit)
		h := strings.TrimSpace(string(cur))
		if hostnameRE.MatchString(h) && h != "localhost" && h != "debian" {
			id.Hostname = h
		} else {
			// Derived from the machine-id, so a resumed first boot and
			// the console agree on it without storing another secret.
			id.Hostname = "omerta-" + id.MachineID[:6]
		}
	}
	if _, err := r.applyHostname(id.Hostname); err != nil {
		return nil, "", err
	}
	return id, "", nil
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// smallFileLimit caps the one-line files first boot reads (machine-id,
// hostname, os-release): a few hundred bytes at most on any real system.
const smallFileLimit = 64 << 10
