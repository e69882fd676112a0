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

// stepLynis runs a Lynis audit when Lynis is installed and the site allows
// it. Its parsed result is journalled, so a resumed first boot reports it
// without auditing again.
func (r *runner) stepLynis(ctx context.Context) (any, string, error) {
	sd, err := r.site()
	if err != nil {
		return nil, "", err
	}
	if _, err := r.fs.Stat(LynisPath); err != nil {
		return nil, "Lynis is not installed", nil
	}
	if !sd.Config.Firstboot.LynisEnabled() {
		return nil, "firstboot.lynis is false in the site configuration", nil
	}
	if r.opts.Lynis == nil {
		return nil, "Lynis audits the running system; only --live runs it", nil
	}
	f, err := os.CreateTemp("", "omerta-lynis-report-*.dat")
	if err != nil {
		return nil, "", fmt.Errorf("lynis: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	r.mid()
	if err := r.opts.Lynis(ctx, tmp); err != nil {
		return nil, "", fmt.Errorf("lynis: %w", err)
	}
	data, err := safeio.ReadFile(tmp, lynisReportLimit)
	if err != nil {
		return nil, "", fmt.Errorf("lynis: reading its report: %w", err)
	}
	res, err := ParseLynisReport(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("lynis: %w", err)
	}
	return res, "", nil
}

func (r *runner) runLynis(ctx context.Context, reportFile string) error {
	return r.opts.Exec(ctx, LynisPath, "audit", "system", "--quick", "--no-colors", "--report-file", reportFile)
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
