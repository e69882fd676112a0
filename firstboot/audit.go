package firstboot

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/store"
	"github.com/omertaos/omertaos/appliance/terminal"
	"github.com/omertaos/omertaos/firstboot/report"
)

// MaxAuditAttempts bounds the runs of one audit, interrupted ones
// included: a Lynis that fails, or a machine that is switched off during
// it, every time would otherwise keep the report pending for ever. After
// the last, the report is sealed with the audit failed and why.
const MaxAuditAttempts = 3

// ErrFirstbootPending is returned (wrapped) by RunAudit before first boot
// has completed: the audit is sealed into the report first boot sealed.
var ErrFirstbootPending = errors.New("first boot has not completed")

// ErrNothingToRetry is returned (wrapped) by RunAudit with Retry when the
// report holds no failed audit to run again.
var ErrNothingToRetry = errors.New("no failed Lynis audit to retry")

// AuditOptions configure RunAudit. Of Options it uses Root, Live, Out, Now,
// Lynis, Exec, Notify, ClockSynced, BootIDPath and Hook; Hook is called
// with step AuditStep at "before" (the attempt journalled, Lynis not yet
// run), "mid" (Lynis done, nothing sealed), "sealed" (report.json
// written) and "after" (the step table written, no done marker yet).
type AuditOptions struct {
	Options
	// Retry runs again an audit that every attempt failed, as an
	// operator does after fixing what made Lynis fail; its outcome is a
	// further addendum.
	Retry bool
}

// AuditResult says how RunAudit ended.
type AuditResult struct {
	// AlreadyDone is true when the audit's done marker existed and nothing
	// ran.
	AlreadyDone bool
	// State is the audit as the report now tells it.
	State report.AuditState
}

// auditJournal is the audit's memory across power cuts, rewritten
// atomically at each change.
type auditJournal struct {
	Version int `json:"version"`
	// Attempts counts the runs of this audit (since the last retry).
	Attempts int `json:"attempts"`
	// Running is set while an attempt runs: found set, that attempt was
	// cut off.
	Running   bool      `json:"running"`
	StartedAt time.Time `json:"started_at,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Addenda is how many addenda the report held when these attempts
	// began (0, or more after a retry): once it holds more, their
	// outcome is sealed.
	Addenda int `json:"addenda"`
}

const auditJournalVersion = 1

// auditor is one run of the deferred audit.
type auditor struct {
	opts AuditOptions
	fs   rootfs.Root
	key  ed25519.PrivateKey
	st   *store.Store
	j    auditJournal
}

// RunAudit runs the Lynis audit that first boot deferred and seals its
// result into the report as a signed addendum (omerta-lynis.service runs
// it once the console is up). It resumes after a power cut: an attempt cut
// off counts, and the next one starts. It prints "omerta-lynis:" lines:
// "audit started (attempt N of 3)", then "audit sealed: hardening index
// I, W warning(s), S suggestion(s), took D (Lynis V)", or the failure.
// Once the outcome is sealed, or the report says the audit was skipped,
// it writes AuditDonePath and later runs change nothing.
func RunAudit(ctx context.Context, ao AuditOptions) (AuditResult, error) {
	a, err := newAuditor(ao)
	if err != nil {
		return AuditResult{}, err
	}
	return a.run(ctx)
}

func (a *auditor) run(ctx context.Context) (AuditResult, error) {
	if a.fs.Exists(AuditDonePath) && !a.opts.Retry {
		a.printf("audit already complete (%s exists); nothing changed", AuditDonePath)
		return AuditResult{AlreadyDone: true}, nil
	}
	if !a.fs.Exists(DonePath) {
		return AuditResult{}, fmt.Errorf("lynis audit: %w (%s is missing)", ErrFirstbootPending, DonePath)
	}
	rep, err := a.loadReport()
	if err != nil {
		return AuditResult{}, err
	}
	st, err := store.Open(ctx, resolvedIn(a.fs, StateDBPath), store.WithSchemas(storeSchemas...), store.WithClock(a.opts.Now))
	if err != nil {
		return AuditResult{}, fmt.Errorf("lynis audit: %w", err)
	}
	defer st.Close()
	a.st = st
	if err := a.readJournal(); err != nil {
		return AuditResult{}, err
	}
	if err := a.startRetry(rep); err != nil {
		return AuditResult{}, err
	}
	if rep.AuditState().Status == report.AuditSkipped || len(rep.Addenda) > a.j.Addenda {
		// Skipped at first boot, or sealed by an attempt that a power cut
		// stopped before its marker: finish what it left.
		return a.finish(ctx, rep)
	}
	if a.opts.Lynis == nil {
		// Not an attempt: nothing ran, and none of the three is spent.
		return AuditResult{State: rep.AuditState()}, errors.New("lynis audit: the report's audit is pending, and Lynis audits the running system: only --live runs it")
	}
	return a.attempt(ctx, rep)
}

func newAuditor(ao AuditOptions) (*auditor, error) {
	root := rootOr(ao.Root)
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("root %q: must be an absolute path", root)
	}
	if ao.Live && filepath.Clean(root) != "/" {
		return nil, fmt.Errorf("a live audit audits the running system, so it needs root \"/\", not %q", root)
	}
	rfs, err := rootfs.New(root)
	if err != nil {
		return nil, fmt.Errorf("lynis audit: %w", err)
	}
	a := &auditor{opts: ao, fs: rfs}
	a.opts.setDefaults()
	if a.opts.Lynis == nil && a.opts.Live {
		a.opts.Lynis = lynisCommand(a.opts.Exec)
	}
	return a, nil
}

func (a *auditor) printf(format string, args ...any) {
	fmt.Fprintf(a.opts.Out, "omerta-lynis: "+format+"\n", args...)
}

func (a *auditor) hook(point string) {
	if a.opts.Hook != nil {
		a.opts.Hook(AuditStep, point)
	}
}

func (a *auditor) notify(format string, args ...any) {
	_ = a.opts.Notify("STATUS=" + fmt.Sprintf(format, args...))
}

// loadReport reads the report and verifies it against the device key: an
// addendum is sealed only into the report this device signed, as signed.
func (a *auditor) loadReport() (*report.Report, error) {
	key, err := LoadSigningKey(a.fs.Dir())
	if err != nil {
		return nil, fmt.Errorf("lynis audit: %w", err)
	}
	a.key = key
	data, err := a.fs.ReadFile(ReportPath, report.DefaultMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("lynis audit: reading the report: %w", err)
	}
	v, err := report.VerifyWith(data, report.VerifyOptions{PublicKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		return nil, fmt.Errorf("lynis audit: %s does not verify against the device key, so nothing is sealed into it: %w", ReportPath, err)
	}
	return v.Report, nil
}

func (a *auditor) readJournal() error {
	data, err := a.fs.ReadFile(AuditJournalPath, smallFileLimit)
	if errors.Is(err, fs.ErrNotExist) {
		a.j = auditJournal{Version: auditJournalVersion}
		return nil
	}
	if err != nil {
		return fmt.Errorf("lynis audit: reading its journal: %w", err)
	}
	var j auditJournal
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("lynis audit: journal %s: %w (move it aside to start the audit again)", AuditJournalPath, err)
	}
	if j.Version != auditJournalVersion || j.Attempts < 0 || j.Addenda < 0 {
		return fmt.Errorf("lynis audit: journal %s: version %d with %d attempts, this binary writes version %d", AuditJournalPath, j.Version, j.Attempts, auditJournalVersion)
	}
	a.j = j
	return nil
}

func (a *auditor) writeJournal() error {
	data, err := json.MarshalIndent(a.j, "", "  ")
	if err != nil {
		return fmt.Errorf("lynis audit: encoding its journal: %w", err)
	}
	if _, err := a.fs.WriteFile(AuditJournalPath, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("lynis audit: writing its journal: %w", err)
	}
	return nil
}

// startRetry begins a new round of attempts when Retry asks for one; only
// an audit sealed as failed can be retried.
func (a *auditor) startRetry(rep *report.Report) error {
	if !a.opts.Retry {
		return nil
	}
	if st := rep.AuditState(); st.Status != report.AuditFailed {
		return fmt.Errorf("lynis audit: %w: the report's audit is %s", ErrNothingToRetry, terminal.Escape(st.Describe()))
	}
	a.j = auditJournal{Version: auditJournalVersion, Addenda: len(rep.Addenda)}
	if err := a.writeJournal(); err != nil {
		return err
	}
	if _, err := a.fs.Remove(AuditDonePath); err != nil {
		return fmt.Errorf("lynis audit: %w", err)
	}
	a.printf("retrying the audit that failed %d time(s); its outcome is sealed after the failure", rep.AuditState().Attempts)
	return nil
}

// attempt runs one attempt, or seals the audit as failed when the
// attempts are spent. A failed attempt that leaves attempts is a
// *StepError; the next boot runs the next one.
func (a *auditor) attempt(ctx context.Context, rep *report.Report) (AuditResult, error) {
	if a.j.Running {
		a.j.Running = false
		a.j.LastError = fmt.Sprintf("attempt %d did not finish (power loss, reboot or shutdown)", a.j.Attempts)
		a.printf("attempt %d did not finish (power loss, reboot or shutdown)", a.j.Attempts)
	}
	if a.j.Attempts >= MaxAuditAttempts {
		return a.seal(ctx, rep, a.addendum(report.AuditFailed, nil))
	}
	a.j.Attempts++
	a.j.Running, a.j.StartedAt = true, a.opts.Now().UTC()
	if err := a.writeJournal(); err != nil {
		return AuditResult{}, err
	}
	if err := a.record(ctx, StatusRunning, "", nil); err != nil {
		return AuditResult{}, err
	}
	a.hook("before")
	a.printf("audit started (attempt %d of %d); the console is usable meanwhile", a.j.Attempts, MaxAuditAttempts)
	a.notify("Lynis audit: attempt %d of %d", a.j.Attempts, MaxAuditAttempts)
	res, err := runLynis(ctx, a.opts.Lynis)
	if err != nil && ctx.Err() != nil {
		// Stopped (a shutdown): the journal says running, and the next
		// boot counts the attempt.
		a.printf("audit interrupted (attempt %d of %d); it runs again on the next boot", a.j.Attempts, MaxAuditAttempts)
		return AuditResult{}, fmt.Errorf("lynis audit interrupted: %w", ctx.Err())
	}
	if err != nil {
		return a.failAttempt(ctx, rep, err)
	}
	a.hook("mid")
	return a.seal(ctx, rep, a.addendum(report.AuditDone, res))
}

// failAttempt records a failed attempt; the last one seals the failure.
func (a *auditor) failAttempt(ctx context.Context, rep *report.Report, runErr error) (AuditResult, error) {
	a.j.Running, a.j.LastError = false, oneLine(runErr.Error())
	if err := a.writeJournal(); err != nil {
		return AuditResult{}, err
	}
	if a.j.Attempts >= MaxAuditAttempts {
		return a.seal(ctx, rep, a.addendum(report.AuditFailed, nil))
	}
	if err := a.record(ctx, StatusFailed, a.j.LastError, map[string]any{"error": a.j.LastError}); err != nil {
		return AuditResult{}, err
	}
	a.printf("audit failed (attempt %d of %d): %s; it runs again on the next boot", a.j.Attempts, MaxAuditAttempts, terminal.Escape(a.j.LastError))
	return AuditResult{State: rep.AuditState()}, &StepError{Step: AuditStep, Err: runErr}
}

// addendum is this round's outcome: the last attempt's times, and either
// Lynis' result or the last error.
func (a *auditor) addendum(status string, res *report.Lynis) report.Addendum {
	finished := a.opts.Now().UTC()
	// A clock that stepped back across a reboot must not make the
	// addendum one that no verifier accepts.
	finished = notBefore(finished, a.j.StartedAt)
	ad := report.Addendum{
		Kind: report.AddendumLynis, Status: status, Attempts: a.j.Attempts,
		BootID: readTrim(a.opts.BootIDPath), StartedAt: a.j.StartedAt, FinishedAt: finished,
		ClockTrusted: a.opts.ClockSynced(), Lynis: res,
	}
	if status == report.AuditFailed {
		ad.Error = a.j.LastError
		if ad.Error == "" {
			ad.Error = "no attempt finished"
		}
	}
	return ad
}

// seal appends the addendum, signs the report again and writes it; then
// finish records it.
func (a *auditor) seal(ctx context.Context, rep *report.Report, ad report.Addendum) (AuditResult, error) {
	if err := report.AppendAddendum(rep, ad, a.key); err != nil {
		return AuditResult{}, fmt.Errorf("lynis audit: %w", err)
	}
	data, err := report.Marshal(rep)
	if err != nil {
		return AuditResult{}, err
	}
	if _, err := a.fs.WriteFile(ReportPath, data, 0o644); err != nil {
		return AuditResult{}, fmt.Errorf("lynis audit: writing the report: %w", err)
	}
	a.hook("sealed")
	return a.finish(ctx, rep)
}

// finish makes a sealed (or skipped) audit complete: report.html, the
// step table and audit log, the journal, the done marker. Each part is
// idempotent, so a run after a power cut redoes what is missing.
func (a *auditor) finish(ctx context.Context, rep *report.Report) (AuditResult, error) {
	st := rep.AuditState()
	data, err := report.Marshal(rep)
	if err != nil {
		return AuditResult{}, err
	}
	var html strings.Builder
	if err := report.RenderHTML(&html, rep); err != nil {
		return AuditResult{}, fmt.Errorf("lynis audit: rendering the report: %w", err)
	}
	if _, err := a.fs.WriteFile(ReportHTMLPath, []byte(html.String()), 0o644); err != nil {
		return AuditResult{}, fmt.Errorf("lynis audit: writing the report: %w", err)
	}
	sum := sha256.Sum256(data)
	if err := a.recordFinal(ctx, st, hex.EncodeToString(sum[:])); err != nil {
		return AuditResult{}, err
	}
	a.hook("after")
	if a.j.Attempts > 0 {
		a.j.Running = false
		if st.Status == report.AuditDone {
			a.j.LastError = ""
		}
		if err := a.writeJournal(); err != nil {
			return AuditResult{}, err
		}
	}
	body := fmt.Sprintf("lynis audit %s %s\nreport sha256 %s\n", st.Status, a.opts.Now().UTC().Format(time.RFC3339), hex.EncodeToString(sum[:]))
	if _, err := a.fs.WriteFile(AuditDonePath, []byte(body), 0o644); err != nil {
		return AuditResult{}, fmt.Errorf("lynis audit: %w", err)
	}
	a.printf("%s", finalLine(st))
	a.notify("Lynis audit %s", st.Status)
	return AuditResult{State: st}, nil
}

// finalLine is the console's last word on the audit, the line the e2e
// test waits for.
func finalLine(st report.AuditState) string {
	switch st.Status {
	case report.AuditDone:
		l := st.Lynis
		return fmt.Sprintf("audit sealed: hardening index %d, %d warning(s), %d suggestion(s), took %s (Lynis %s)",
			l.Index, len(l.Warnings), l.Suggestions, st.FinishedAt.Sub(st.StartedAt).Round(time.Second), terminal.Escape(l.Version))
	case report.AuditFailed:
		return fmt.Sprintf("audit sealed as failed after %d attempt(s): %s", st.Attempts, terminal.Escape(st.Reason))
	}
	return fmt.Sprintf("audit skipped (%s)", terminal.Escape(st.Reason))
}

// record writes the audit's row in the step table for the current
// attempt, with an audit entry when detail is not nil.
func (a *auditor) record(ctx context.Context, status, note string, detail map[string]any) error {
	now := a.opts.Now().UTC()
	row := StepState{Name: AuditStep, Status: status, Attempts: a.j.Attempts, StartedAt: a.j.StartedAt, Error: note}
	if status != StatusRunning {
		row.FinishedAt = notBefore(now, a.j.StartedAt)
	}
	return a.writeRow(ctx, row, detail)
}

func (a *auditor) writeRow(ctx context.Context, row StepState, detail map[string]any) error {
	return a.st.Write(ctx, func(tx *sql.Tx) error {
		if err := upsertStep(ctx, tx, auditPosition(), &row, a.opts.Now()); err != nil {
			return err
		}
		if detail == nil {
			return nil
		}
		detail["status"], detail["attempt"] = row.Status, row.Attempts
		return a.st.AuditTx(ctx, tx, store.AuditEntry{Actor: AuditActor, Action: "firstboot.step." + row.Status, Target: AuditStep, Detail: detail})
	})
}

// recordFinal writes the sealed outcome's row, whose times are the
// addendum's, and its audit entry, in one transaction and once: a rerun
// after a power cut finds the row already so and writes nothing. A
// skipped audit's row is first boot's.
func (a *auditor) recordFinal(ctx context.Context, st report.AuditState, sha string) error {
	if st.Status == report.AuditSkipped {
		return nil
	}
	row := StepState{Name: AuditStep, Status: StatusDone, Attempts: st.Attempts, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt}
	detail := map[string]any{"addendum": st.Addendum, "report_sha256": sha, "duration_ms": st.FinishedAt.Sub(st.StartedAt).Milliseconds()}
	if l := st.Lynis; l != nil {
		detail["index"], detail["warnings"], detail["suggestions"], detail["lynis_version"] = l.Index, len(l.Warnings), l.Suggestions, l.Version
	} else {
		row.Status, row.Error = StatusFailed, st.Reason
		detail["error"] = st.Reason
	}
	var status string
	var finished sql.NullString
	err := a.st.Read().QueryRowContext(ctx, `SELECT status, finished_at FROM firstboot_steps WHERE name = ?`, AuditStep).Scan(&status, &finished)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("lynis audit: reading its step row: %w", err)
	}
	if status == row.Status && finished.Valid && finished.String == store.FormatTime(row.FinishedAt) {
		return nil
	}
	return a.writeRow(ctx, row, detail)
}

// notBefore is t, or start when the clock has gone back past it.
func notBefore(t, start time.Time) time.Time {
	if t.Before(start) {
		return start
	}
	return t
}
