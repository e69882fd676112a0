package report

import (
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
)

// SchemaVersion names the shape of a report. It is also the $id suffix of the
// published JSON Schema and the first line of the signed message, so a report
// of one version can never verify as another.
const SchemaVersion = "omertaos.dev/firstboot-report/v1"

// Algorithm is the only signature algorithm of schema v1.
const Algorithm = "ed25519"

// Report is the signed first-boot report. The first-boot engine fills Header
// and Records, then calls Seal, which computes everything that follows from
// them (sequence numbers, summary, hash chain, signature).
type Report struct {
	Header    Header    `json:"header"`
	Records   []Record  `json:"records"`
	Signature Signature `json:"signature"`
}

// Header says which machine, which image and which run the records are about.
type Header struct {
	// SchemaVersion is always SchemaVersion; Seal sets it.
	SchemaVersion string `json:"schema_version"`
	Image         Image  `json:"image"`
	// MachineID is /etc/machine-id, BootID /proc/sys/kernel/random/boot_id of
	// the boot that wrote the report.
	MachineID string         `json:"machine_id"`
	BootID    string         `json:"boot_id"`
	Hostname  string         `json:"hostname"`
	Profile   config.Profile `json:"profile"`
	// StartedAt is when the first attempt of first boot began, FinishedAt when
	// the report was sealed. ClockTrusted is false when the clock had not been
	// synchronised (no RTC, no NTP yet), so an auditor knows how far to trust
	// every timestamp in the report.
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	ClockTrusted bool      `json:"clock_trusted"`
	// Tools maps each tool that produced evidence ("omerta", "lynis",
	// "nft", "kernel") to its version.
	Tools map[string]string `json:"tools"`
	// Attempts counts the runs of `omerta firstboot` it took, power cuts
	// included.
	Attempts int `json:"attempts"`
	// Summary counts the records per result; Seal computes it and Verify
	// checks it.
	Summary map[Outcome]int `json:"summary"`
	Probe   Probe           `json:"probe"`
	// Lynis is null when Lynis was not installed or not enabled.
	Lynis *Lynis `json:"lynis"`
	Site  Site   `json:"site"`
	Steps []Step `json:"steps"`
}

// Image identifies the OS image that booted.
type Image struct {
	Version string `json:"version"`
	// Digest is "sha256:<hex>" of the image when the build stamped one, else "".
	Digest string `json:"digest"`
}

// Probe is the hardware compatibility verdict (appliance/probe.Verdict).
type Probe struct {
	// Status is "pass", "warn" or "fail", or "error" when the probe itself
	// could not run.
	Status string       `json:"status"`
	Checks []ProbeCheck `json:"checks"`
}

// ProbeCheck mirrors appliance/probe.Check.
type ProbeCheck struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Measured string `json:"measured"`
	Required string `json:"required"`
}

// Lynis is what a Lynis audit said.
type Lynis struct {
	Version     string   `json:"version"`
	Index       int      `json:"index"`
	Warnings    []string `json:"warnings"`
	Suggestions int      `json:"suggestions"`
}

// Site says which configuration files were read and what was wrong with them.
type Site struct {
	Sources  []config.Source `json:"sources"`
	Problems []string        `json:"problems"`
}

// Step is one step of the first-boot engine as its journal recorded it.
type Step struct {
	Name string `json:"name"`
	// Status is the engine's word for the step ("done", "skipped", "failed").
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Error      string    `json:"error"`
}

// Record is one control as read back, one link of the hash chain.
type Record struct {
	// Seq numbers records from 1; Seal sets it.
	Seq        int         `json:"seq"`
	ID         string      `json:"id"`
	Title      string      `json:"title"`
	References []Reference `json:"references"`
	Expected   string      `json:"expected"`
	Actual     string      `json:"actual"`
	Result     Outcome     `json:"result"`
	// Waiver, when set, says why the control is deliberately not enforced.
	Waiver   string     `json:"waiver"`
	Evidence []Evidence `json:"evidence"`
	Time     time.Time  `json:"time"`
	// PrevHash is the previous record's Hash; the first record's is the
	// header's hash. Hash covers this record, PrevHash included. Seal sets both.
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Reference points at the benchmark item a control implements.
type Reference struct {
	// Scheme is "CIS-Debian12", "KSPP" or "DISA-SRG".
	Scheme string `json:"scheme"`
	ID     string `json:"id"`
}

// Evidence is what a control read to reach its result.
type Evidence struct {
	// Source is the absolute path read or the command run.
	Source string `json:"source"`
	// SHA256 is the lowercase hex digest of all the bytes read, "" when
	// nothing could be read.
	SHA256 string `json:"sha256"`
	// Excerpt is the part of those bytes that decided the result.
	Excerpt string `json:"excerpt"`
}

// Signature binds the header and the chain to the device's Ed25519 key.
type Signature struct {
	// Algorithm is always "ed25519".
	Algorithm string `json:"algorithm"`
	// PublicKey is the raw 32-byte key, standard base64 with padding.
	PublicKey string `json:"public_key"`
	// KeyFingerprint is KeyFingerprint(PublicKey).
	KeyFingerprint string `json:"key_fingerprint"`
	// ChainHead is the last record's hash (the header hash when there are no
	// records), HeaderSHA256 the hash of the canonical header.
	ChainHead    string `json:"chain_head"`
	HeaderSHA256 string `json:"header_sha256"`
	// Value is the Ed25519 signature over SignedMessage, standard base64.
	Value string `json:"value"`
}

// Outcome is a control's result in the XCCDF 1.2 vocabulary.
type Outcome string

// The XCCDF results that a record may carry.
const (
	OutcomePass          Outcome = "pass"
	OutcomeFail          Outcome = "fail"
	OutcomeError         Outcome = "error"
	OutcomeNotApplicable Outcome = "notapplicable"
	OutcomeNotChecked    Outcome = "notchecked"
	OutcomeInformational Outcome = "informational"
	OutcomeFixed         Outcome = "fixed"
)

// Outcomes lists every valid Outcome in the order reports print them.
var Outcomes = []Outcome{
	OutcomePass, OutcomeFixed, OutcomeFail, OutcomeError,
	OutcomeNotApplicable, OutcomeNotChecked, OutcomeInformational,
}

// Valid reports whether o is one of Outcomes.
func (o Outcome) Valid() bool {
	for _, v := range Outcomes {
		if o == v {
			return true
		}
	}
	return false
}

// ParseOutcome returns s as an Outcome, or an error naming the choices.
func ParseOutcome(s string) (Outcome, error) {
	if o := Outcome(s); o.Valid() {
		return o, nil
	}
	return "", fmt.Errorf("result %q is not one of pass, fail, error, notapplicable, notchecked, informational, fixed", s)
}

// probeStatuses are the values Header.Probe.Status may take.
var probeStatuses = []string{"pass", "warn", "fail", "error"}
