package firstboot

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/rootfs"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/version"
	"github.com/omertaos/omertaos/firstboot/report"
)

func marshalData(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding step result: %w", err)
	}
	return b, nil
}

func (r *runner) hardenOptions() (HardenOptions, error) {
	sd, err := r.site()
	if err != nil {
		return HardenOptions{}, err
	}
	return HardenOptions{Root: r.root, Profile: sd.Config.Profile, Site: sd.Config, Live: r.opts.Live, Now: r.opts.Now}, nil
}

// stepProbe judges the hardware. A probe that cannot run is recorded as an
// "error" verdict in the report rather than stopping first boot: a machine
// we cannot judge still needs hardening and a report that says so.
func (r *runner) stepProbe(ctx context.Context) (any, string, error) {
	sd, err := r.site()
	if err != nil {
		return nil, "", err
	}
	r.mid()
	v, err := r.opts.Prober.Probe(ctx, ProbeOptions{Root: r.opts.ProbeRoot, StateDir: resolvedIn(r.fs, StateDir), Profile: sd.Config.Profile, Now: r.opts.Now}, r.st)
	if ctx.Err() != nil {
		return nil, "", fmt.Errorf("probe: %w", ctx.Err())
	}
	if err != nil {
		v = report.Probe{Status: "error", Checks: []report.ProbeCheck{{ID: "probe", Status: "error", Reason: oneLine(err.Error())}}}
	}
	r.auditExtra = map[string]any{"verdict": v.Status}
	return v, "", nil
}

func (r *runner) stepHardenApply(ctx context.Context) (any, string, error) {
	o, err := r.hardenOptions()
	if err != nil {
		return nil, "", err
	}
	r.mid()
	changed, err := r.opts.Hardener.Apply(ctx, o)
	if err != nil {
		return nil, "", fmt.Errorf("applying hardening profile %s: %w", o.Profile, err)
	}
	r.auditExtra = map[string]any{"profile": o.Profile, "changed": changed}
	return nil, "", nil
}

// verifyData is what harden-verify journals: the records of the report.
type verifyData struct {
	Records []report.Record `json:"records"`
}

func (r *runner) stepHardenVerify(ctx context.Context) (any, string, error) {
	o, err := r.hardenOptions()
	if err != nil {
		return nil, "", err
	}
	r.mid()
	recs, err := r.opts.Hardener.Check(ctx, o)
	if err != nil {
		return nil, "", fmt.Errorf("verifying hardening profile %s: %w", o.Profile, err)
	}
	counts := map[report.Outcome]int{}
	for _, rec := range recs {
		counts[rec.Result]++
	}
	r.auditExtra = map[string]any{"profile": o.Profile, "results": counts}
	return verifyData{Records: recs}, "", nil
}

// reportData is what the report step journals.
type reportData struct {
	SHA256 string `json:"sha256"`
}

// stepReport builds the report from the journal, seals it with the device
// key, and writes report.json and report.html. The Lynis audit is not in
// it: the report says it is deferred (RunAudit seals it in later) or
// skipped, and a skipped audit's row in the step table says so too.
func (r *runner) stepReport(ctx context.Context) (any, string, error) {
	rep, err := r.buildReport()
	if err != nil {
		return nil, "", err
	}
	if la := rep.Header.LynisAudit; la.Status == report.AuditSkipped {
		now := r.opts.Now().UTC()
		row := StepState{Name: AuditStep, Status: StatusSkipped, StartedAt: now, FinishedAt: now, Reason: la.Reason}
		if err := r.st.Write(ctx, func(tx *sql.Tx) error { return upsertStep(ctx, tx, auditPosition(), &row, now) }); err != nil {
			return nil, "", err
		}
	}
	key, err := LoadSigningKey(r.root)
	if err != nil {
		return nil, "", err
	}
	if err := report.Seal(rep, key); err != nil {
		return nil, "", err
	}
	data, err := report.Marshal(rep)
	if err != nil {
		return nil, "", err
	}
	if _, err := r.fs.WriteFile(ReportPath, data, 0o644); err != nil {
		return nil, "", fmt.Errorf("writing report: %w", err)
	}
	r.mid()
	var html strings.Builder
	if err := report.RenderHTML(&html, rep); err != nil {
		return nil, "", fmt.Errorf("rendering report: %w", err)
	}
	if _, err := r.fs.WriteFile(ReportHTMLPath, []byte(html.String()), 0o644); err != nil {
		return nil, "", fmt.Errorf("writing report: %w", err)
	}
	sum := sha256.Sum256(data)
	d := reportData{SHA256: hex.EncodeToString(sum[:])}
	r.auditExtra = map[string]any{"sha256": d.SHA256, "records": len(rep.Records), "summary": rep.Header.Summary}
	return d, "", nil
}

func (r *runner) buildReport() (*report.Report, error) {
	sd, err := r.site()
	if err != nil {
		return nil, err
	}
	id, err := r.identity()
	if err != nil {
		return nil, err
	}
	var probe report.Probe
	if ok, err := r.j.decode(StepProbe, &probe); err != nil || !ok {
		return nil, fmt.Errorf("report: the probe step has not run (%v)", err)
	}
	var vd verifyData
	if ok, err := r.j.decode(StepHardenVerify, &vd); err != nil || !ok {
		return nil, fmt.Errorf("report: the harden-verify step has not run (%v)", err)
	}
	lynis, err := r.lynisDecision()
	if err != nil {
		return nil, err
	}

	info := version.Get()
	tools := map[string]string{"omerta": info.Version, "go": runtime.Version()}
	if k := kernelRelease(); k != "" {
		tools["kernel"] = k
	}
	h := report.Header{
		Image:        r.imageInfo(info.Version),
		MachineID:    id.MachineID,
		BootID:       readTrim(r.opts.BootIDPath),
		Hostname:     id.Hostname,
		Profile:      sd.Config.Profile,
		StartedAt:    r.j.StartedAt,
		FinishedAt:   r.opts.Now().UTC(),
		ClockTrusted: r.opts.ClockSynced(),
		Tools:        tools,
		Attempts:     r.j.Attempts,
		Probe:        probe,
		LynisAudit:   lynis,
		GPUExtension: gpuExtension(r.fs),
		Site:         report.Site{Sources: sd.Sources, Problems: sd.Problems},
	}
	for _, s := range r.j.Steps {
		msg := s.Error
		if s.Status == StatusSkipped {
			msg = s.Reason
		}
		h.Steps = append(h.Steps, report.Step{Name: s.Name, Status: s.Status, Attempts: s.Attempts, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Error: msg})
	}
	return &report.Report{Header: h, Records: vd.Records}, nil
}

// imageInfo reads the image's identity from os-release (mkosi stamps
// IMAGE_VERSION) and the digest the build leaves beside it, when present.
func (r *runner) imageInfo(fallback string) report.Image {
	img := report.Image{Version: fallback}
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := r.fs.ReadFile(p, smallFileLimit)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "IMAGE_VERSION="); ok {
				img.Version = strings.Trim(v, `"'`)
			}
		}
		break
	}
	if b, err := r.fs.ReadFile(ImageDigestPath, smallFileLimit); err == nil {
		if d := strings.TrimSpace(string(b)); strings.HasPrefix(d, "sha256:") && len(d) == 71 {
			img.Digest = d
		}
	}
	return img
}

// readTrim reads a short file of this machine (not of the root being
// prepared: the boot ID and the kernel are the running system's).
func readTrim(p string) string {
	b, err := safeio.ReadFile(p, smallFileLimit)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func kernelRelease() string { return readTrim("/proc/sys/kernel/osrelease") }

// stepDone writes the marker that the unit's ConditionPathExists=! reads.
func (r *runner) stepDone(ctx context.Context) (any, string, error) {
	var rd reportData
	if ok, err := r.j.decode(StepReport, &rd); err != nil || !ok {
		return nil, "", fmt.Errorf("the report step has not run (%v)", err)
	}
	body := fmt.Sprintf("first boot complete %s\nreport sha256 %s\n", r.opts.Now().UTC().Format(time.RFC3339), rd.SHA256)
	r.mid()
	if cur, err := r.fs.ReadFile(DonePath, smallFileLimit); err == nil && strings.Contains(string(cur), "report sha256 "+rd.SHA256+"\n") {
		return nil, "", nil // written by the attempt that a power cut stopped
	}
	if _, err := r.fs.WriteFile(DonePath, []byte(body), 0o644); err != nil {
		return nil, "", err
	}
	return nil, "", nil
}

// Profile returns the profile first boot chose on root, once its site step
// has run.
func Profile(root string) (config.Profile, error) {
	r, err := rootfs.New(rootOr(root))
	if err != nil {
		return "", fmt.Errorf("first boot has not chosen a profile yet (%w)", err)
	}
	j, err := readJournal(r, JournalPath)
	if err != nil || j == nil {
		return "", fmt.Errorf("first boot has not chosen a profile yet (%v)", err)
	}
	var sd siteData
	if ok, err := j.decode(StepSite, &sd); err != nil || !ok {
		return "", fmt.Errorf("first boot has not chosen a profile yet (%v)", err)
	}
	return sd.Config.Profile, nil
}
