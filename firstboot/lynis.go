package firstboot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/firstboot/report"
)

// lynisDecision says whether the report defers the Lynis audit to
// RunAudit or skips it, and why. It depends only on what a resumed first
// boot sees the same way: the image, the journalled site configuration
// and the options.
func (r *runner) lynisDecision() (report.LynisAudit, error) {
	sd, err := r.site()
	if err != nil {
		return report.LynisAudit{}, err
	}
	skip := ""
	_, statErr := r.fs.Stat(LynisPath)
	switch {
	case statErr != nil:
		skip = "Lynis is not installed"
	case !sd.Config.Firstboot.LynisEnabled():
		skip = "firstboot.lynis is false in the site configuration"
	case r.opts.Lynis == nil:
		skip = "Lynis audits the running system; only --live runs it"
	}
	if skip != "" {
		return report.LynisAudit{Status: report.AuditSkipped, Reason: skip}, nil
	}
	return report.LynisAudit{Status: report.AuditDeferred}, nil
}

// runLynis runs one audit and parses its report file.
func runLynis(ctx context.Context, lynis func(ctx context.Context, reportFile string) error) (*report.Lynis, error) {
	f, err := os.CreateTemp("", "omerta-lynis-report-*.dat")
	if err != nil {
		return nil, fmt.Errorf("lynis: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	if err := lynis(ctx, tmp); err != nil {
		return nil, fmt.Errorf("lynis: %w", err)
	}
	data, err := safeio.ReadFile(tmp, lynisReportLimit)
	if err != nil {
		return nil, fmt.Errorf("lynis: reading its report: %w", err)
	}
	res, err := ParseLynisReport(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("lynis: %w", err)
	}
	return res, nil
}

// lynisCommand is the installed Lynis, started through run (Options.Exec).
func lynisCommand(run func(ctx context.Context, name string, args ...string) error) func(ctx context.Context, reportFile string) error {
	return func(ctx context.Context, reportFile string) error {
		return run(ctx, LynisPath, "audit", "system", "--quick", "--no-colors", "--report-file", reportFile)
	}
}

// lynisReportLimit is ten times the report of a full audit (about 300 KiB);
// maxLynisWarnings keeps the report's list readable and bounded.
const (
	lynisReportLimit = 4 << 20
	maxLynisWarnings = 1000
)

// ParseLynisReport reads what matters from a Lynis report file (key=value
// lines, "[]" keys repeated): the hardening index, the warnings as
// "ID: text", the number of suggestions and Lynis' version.
func ParseLynisReport(rd io.Reader) (*report.Lynis, error) {
	res := &report.Lynis{Index: -1, Warnings: []string{}}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "hardening_index":
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 100 {
				return nil, fmt.Errorf("report: hardening_index %q is not a number from 0 to 100", v)
			}
			res.Index = n
		case "lynis_version":
			res.Version = strings.TrimSpace(v)
		case "warning[]":
			// ID|text|details|solution|
			f := strings.Split(v, "|")
			w := strings.TrimSpace(f[0])
			if len(f) > 1 && strings.TrimSpace(f[1]) != "" {
				w += ": " + strings.TrimSpace(f[1])
			}
			if len(f) > 2 && f[2] != "-" && strings.TrimSpace(f[2]) != "" {
				w += " (" + strings.TrimSpace(f[2]) + ")"
			}
			if len(res.Warnings) == maxLynisWarnings {
				return nil, fmt.Errorf("report has more than %d warnings", maxLynisWarnings)
			}
			res.Warnings = append(res.Warnings, w)
		case "suggestion[]":
			res.Suggestions++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading report: %w", err)
	}
	if res.Index < 0 {
		return nil, errors.New("report has no hardening_index line (did the audit finish?)")
	}
	return res, nil
}
