package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/omertaos/omertaos/appliance/atomicfile"
)

// The agent's configuration reaches it as a file, never through its
// environment: an environment is shown by every process listing and
// container inspection, and secrets must not be.
const (
	// ConfigMountPath is where the configuration directory is mounted,
	// read-only, in the agent's container.
	ConfigMountPath = "/etc/omerta-agent"
	// ConfigFile is the configuration (secrets included) as one JSON
	// object; OMERTA_CONFIG_FILE names it in the agent's environment.
	ConfigFile = "config.json"
)

// configVolume is the name of the configuration directory of a
// generation inside the agent's data directory. The underscore keeps it
// apart from the manifest's volumes, whose names are DNS labels.
func configVolume(gen int64) string { return "_config-g" + strconv.FormatInt(gen, 10) }

// writeConfigFile writes the full configuration of a generation where
// its container mounts it. Each generation has its own directory, so that
// a patch never changes the file of the container it replaces.
func (s *Service) writeConfigFile(id string, gen int64, cfg map[string]any) error {
	if cfg == nil {
		cfg = map[string]any{}
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding the configuration of %s", quote(id))
	}
	dir := filepath.Join(s.agentDir(id), configVolume(gen))
	if err := os.MkdirAll(s.agentDir(id), 0o700); err != nil {
		return fmt.Errorf("creating the data directory of %s: %w", quote(id), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating the configuration directory of %s: %w", quote(id), err)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("the configuration directory of %s is not a directory", quote(id))
	}
	// Readable by the agent's user, whatever uid the image gives it: the
	// directory (0700, chowned to that user by the runtime) guards it.
	if _, err := atomicfile.WriteFile(filepath.Join(dir, ConfigFile), data, 0o444); err != nil {
		return fmt.Errorf("writing the configuration of %s: %w", quote(id), err)
	}
	return nil
}

// removeConfigDir removes a generation's configuration once its container
// is gone.
func (s *Service) removeConfigDir(id string, gen int64) error {
	if gen <= 0 {
		return nil
	}
	err := os.RemoveAll(filepath.Join(s.agentDir(id), configVolume(gen)))
	if err != nil {
		return fmt.Errorf("removing the configuration of %s generation %d: %w", quote(id), gen, err)
	}
	return nil
}
