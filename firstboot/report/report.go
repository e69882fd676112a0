package report

import (
	"fmt"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
)

// SchemaVersion names the shape of a report. It is also the $id suffix of the
// published JSON Schema and the first line of the signed message, so a report
// of one version can never verify as another.
//
// v2 moved the Lynis audit out of the header: first boot seals the report
// with header.lynis_audit saying whether the audit is deferred or skipped,
// and the audit's result arrives later as a signed addendum.
const SchemaVersion = "omertaos.dev/firstboot-report/v2"

// Algorithm is the only signature algorithm of schema v2.
const Algorithm = "ed25519"

// Report is the signed first-boot report. The first-boot engine fills Header
// and Records, then calls Seal, which computes everything that follows from
// them (sequence numbers, summary, hash chain, signature). What is learnt
// after first boot (the Lynis audit) is added with AppendAddendum, which
// extends the chain and signs the whole again.
type Report struct {
	Header  Header   `json:"header"`
	Records []Record `json:"records"`
	// Addenda continue the chain after the records, in the order they were
	// sealed; empty until one is.
	Addenda   []Addendum `json:"addenda"`
	Signature Signature  `json:"signature"`
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
	// LynisAudit says whether the Lynis audit runs after first boot or
	// was skipped; its result is an addendum.
	LynisAudit LynisAudit `json:"lynis_audit"`
	// GPUExtension is what became of the image's NVIDIA driver extension
	// at the boot that sealed the report; absent when that boot recorded
	// nothing (an image without the extension, or a report sealed before
	// the field existed).
	GPUExtension *GPUExtension `json:"gpu_extension,omitempty"`
	Site         Site          `json:"site"`
	Steps        []Step        `json:"steps"`
}

// GPUExtension is /run/omerta/gpu-extension.json as first boot read it
// (appliance/gpu/extension.State, without its time and PCI addresses).
type GPUExtension struct {
	// Outcome is GPUExtensionMerged, GPUExtensionNotMerged,
	// GPUExtensionRefused, GPUExtensionFailed, or GPUExtensionUnreadable
	// when the state file was there but could not be read or was invalid;
	// Reason then says why.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	// Forced is true when the merge was asked for without a GPU.
	Forced bool `json:"forced"`
	// DriverVersion, Modules ("open" or "proprietary"), Kernel and SHA256
	// (of the extension image) come from its manifest; empty when the
	// manifest could not be read.
	DriverVersion string `json:"driver_version"`
	Modules       string `json:"modules"`
	Kernel        string `json:"kernel"`
	SHA256        string `json:"sha256"`
}

// Describe says what became of the extension, in one line (unescaped).
func (g GPUExtension) Describe() string {
	what := "driver extension"
	if g.DriverVersion != "" {
		what = fmt.Sprintf("driver extension %s (%s modules, kernel %s)", g.DriverVersion, g.Modules, g.Kernel)
	}
	if g.Forced {
		what += ", forced,"
	}
	return fmt.Sprintf("%s %s: %s", what, g.Outcome, g.Reason)
}

// The outcomes of header.gpu_extension.
const (
	GPUExtensionMerged     = "merged"
	GPUExtensionNotMerged  = "not-merged"
	GPUExtensionRefused    = "refused"
	GPUExtensionFailed     = "failed"
	GPUExtensionUnreadable = "unreadable"
)

// LynisAudit is what first boot decided about the Lynis audit.
type LynisAudit struct {
	// Status is AuditDeferred (the audit runs once the console is up and
	// its result is sealed into the report as an addendum) or AuditSkipped.
	Status string `json:"status"`
	// Reason says why the audit was skipped; empty when deferred.
	Reason string `json:"reason"`
}

// The words of the Lynis audit's state. A header says deferred or skipped;
// an addendum done or failed; AuditState also says pending: deferred, and
// no addendum sealed yet.
const (
	AuditDeferred = "deferred"
	AuditSkipped  = "skipped"
	AuditPending  = "pending"
	AuditDone     = "done"
	AuditFailed   = "failed"
)

// AddendumLynis is the kind of an addendum that holds a Lynis audit, the
// only kind of schema v2.
const AddendumLynis = "lynis"

// Addendum is a result sealed into the report after first boot, one link
// of the chain that continues after the records.
type Addendum struct {
	// Seq numbers addenda from 1; AppendAddendum sets it.
	Seq  int    `json:"seq"`
	Kind string `json:"kind"`
	// Status is AuditDone, with Lynis set, or AuditFailed, with Error saying
	// why the last attempt failed and Lynis null.
	Status string `json:"status"`
	Error  string `json:"error"`
	// Attempts counts the runs it took, interrupted ones included.
	Attempts int `json:"attempts"`
	// BootID is the boot that sealed it; StartedAt and FinishedAt bound the
	// attempt that produced it, ClockTrusted as in the header.
	BootID       string    `json:"boot_id"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	ClockTrusted bool      `json:"clock_trusted"`
	Lynis        *Lynis    `json:"lynis"`
	// PrevHash is the previous addendum's Hash, the first one's the chain
	// head of the records. Hash covers this addendum, PrevHash included.
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
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
	// records), HeaderSHA256 the hash of the canonical header, AddendaHead
	// the last addendum's hash (ChainHead when there are none).
	ChainHead    string `json:"chain_head"`
	HeaderSHA256 string `json:"header_sha256"`
	AddendaHead  string `json:"addenda_head"`
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
