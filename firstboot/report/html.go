package report

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed templates/report.html.tmpl
var templateFS embed.FS

var htmlTemplate = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format(time.RFC3339)
	},
	"short":    short,
	"audit":    func(r *Report) AuditState { return r.AuditState() },
	"outcomes": func() []Outcome { return Outcomes },
	"count":    func(m map[Outcome]int, o Outcome) int { return m[o] },
	"join":     strings.Join,
	"failing": func(recs []Record) []Record {
		var out []Record
		for _, r := range recs {
			if r.Result == OutcomeFail || r.Result == OutcomeError {
				out = append(out, r)
			}
		}
		return out
	},
	"waived": func(recs []Record) []Record {
		var out []Record
		for _, r := range recs {
			if r.Waiver != "" {
				out = append(out, r)
			}
		}
		return out
	},
	"dur": func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() || b.Before(a) {
			return "—"
		}
		return b.Sub(a).Round(time.Millisecond).String()
	},
}).ParseFS(templateFS, "templates/report.html.tmpl"))

// htmlData is what the template sees.
type htmlData struct {
	R *Report
	V *Verification
}

// RenderHTML writes r as a self-contained, printable HTML page. Its signature
// status is what Verify says about r against the key inside it, that is, self-
// consistency only; RenderHTMLVerified shows the outcome of a verification
// against a trusted key instead.
func RenderHTML(w io.Writer, r *Report) error {
	data, err := Marshal(r)
	if err != nil {
		return err
	}
	v, _ := Verify(data, nil)
	return RenderHTMLVerified(w, r, v)
}

// RenderHTMLVerified writes r with the signature status v (which may report
// failures: a tampered report is still rendered, under a warning).
func RenderHTMLVerified(w io.Writer, r *Report, v *Verification) error {
	if err := htmlTemplate.Execute(w, htmlData{R: r, V: v}); err != nil {
		return fmt.Errorf("rendering report HTML: %w", err)
	}
	return nil
}
