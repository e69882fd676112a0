package firstboot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/omertaos/omertaos/appliance/atomicfile"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/safeio"
)

// JournalVersion is the shape of journal.json; a journal of another version
// is refused rather than guessed at.
const JournalVersion = 1

// Step statuses as the journal, the step table and the report spell them.
const (
	StatusPending = "pending"
	StatusRunning = "running"
	StatusDone    = "done"
	StatusSkipped = "skipped"
	StatusFailed  = "failed"
)

// Journal is first boot's memory across power cuts. It is rewritten whole,
// atomically and fsynced, at every step boundary: a step is finished exactly
// when the journal says so, and everything a later step or the report needs
// from it is in its Data.
type Journal struct {
	Version int `json:"version"`
	// Attempts counts the runs of `omerta firstboot` that started work.
	Attempts  int         `json:"attempts"`
	StartedAt time.Time   `json:"started_at"`
	Steps     []StepState `json:"steps"`
}

// StepState is one step as the journal knows it.
type StepState struct {
	Name       string    `json:"name"`
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Reason says why a step was skipped; Error why it failed.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Data is the step's result, kept so that a resumed run and the report
	// do not redo (or re-measure) finished work.
	Data json.RawMessage `json:"data,omitempty"`
}

// finished reports whether the step needs no more work.
func (s StepState) finished() bool { return s.Status == StatusDone || s.Status == StatusSkipped }

func newJournal(names []string) *Journal {
	j := &Journal{Version: JournalVersion}
	for _, n := range names {
		j.Steps = append(j.Steps, StepState{Name: n, Status: StatusPending})
	}
	return j
}

// journalLimit caps the journal: it holds every hardening record with its
// evidence excerpts (about 200 KiB for the enterprise profile); a journal
// far beyond that was not written by first boot.
const journalLimit = 16 << 20

// ReadJournal reads the journal at path, a path on this machine. A missing
// journal is (nil, nil).
func ReadJournal(path string) (*Journal, error) {
	data, err := safeio.ReadFile(path, journalLimit)
	return parseJournal(data, err, path)
}

// readJournal reads the journal at p inside root.
func readJournal(root rootfs.Root, p string) (*Journal, error) {
	data, err := root.ReadFile(p, journalLimit)
	return parseJournal(data, err, p)
}

func parseJournal(data []byte, err error, path string) (*Journal, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	var j Journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if j.Version != JournalVersion {
		return nil, fmt.Errorf("journal %s: version %d, this binary writes version %d", path, j.Version, JournalVersion)
	}
	return &j, nil
}

// reconcile makes j list exactly names, in order, keeping what it knew of
// each. A journal that names an unknown step came from another binary: its
// finished work cannot be trusted to mean the same thing, so it is refused.
func (j *Journal) reconcile(names []string) error {
	known := map[string]StepState{}
	for _, s := range j.Steps {
		known[s.Name] = s
	}
	var steps []StepState
	for _, n := range names {
		s, ok := known[n]
		if !ok {
			s = StepState{Name: n, Status: StatusPending}
		}
		delete(known, n)
		steps = append(steps, s)
	}
	for n := range known {
		return fmt.Errorf("journal names step %q, which this binary does not know", n)
	}
	j.Steps = steps
	return nil
}

func (j *Journal) step(name string) *StepState {
	for i := range j.Steps {
		if j.Steps[i].Name == name {
			return &j.Steps[i]
		}
	}
	return nil
}

// firstUnfinished returns the index of the first step still to do, or
// len(j.Steps) when all are finished.
func (j *Journal) firstUnfinished() int {
	for i, s := range j.Steps {
		if !s.finished() {
			return i
		}
	}
	return len(j.Steps)
}

// decode unmarshals the data of step name into v; false when the step has
// none (not run, or skipped).
func (j *Journal) decode(name string, v any) (bool, error) {
	s := j.step(name)
	if s == nil || len(s.Data) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(s.Data, v); err != nil {
		return false, fmt.Errorf("journal: data of step %s: %w", name, err)
	}
	return true, nil
}

// writeIn writes the journal at p inside root.
func (j *Journal) writeIn(root rootfs.Root, p string) error {
	data, err := j.encode()
	if err != nil {
		return err
	}
	_, err = root.WriteFile(p, data, 0o600)
	return err
}

// write writes the journal at path, a path on this machine (tests).
func (j *Journal) write(path string) error {
	data, err := j.encode()
	if err != nil {
		return err
	}
	_, err = atomicfile.WriteFile(path, data, 0o600)
	return err
}

func (j *Journal) encode() ([]byte, error) {
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding journal: %w", err)
	}
	return append(data, '\n'), nil
}
