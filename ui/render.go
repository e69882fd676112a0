package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/appliance/apitype"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// asset is one embedded static file, served with a content hash in its
// URL so that browsers may keep it for good.
type asset struct {
	body  []byte
	ctype string
	etag  string
	url   string
}

type assets struct{ byName map[string]*asset }

func loadAssets() (*assets, error) {
	a := &assets{byName: map[string]*asset{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:8])
		name := strings.TrimPrefix(p, "static/")
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		a.byName[name] = &asset{body: b, ctype: ct, etag: `"` + h + `"`, url: "/static/" + name + "?v=" + h}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	return a, nil
}

// url is the asset's versioned URL; an unknown name is a programming
// error that the template test catches.
func (a *assets) url(name string) (string, error) {
	if x, ok := a.byName[name]; ok {
		return x.url, nil
	}
	return "", fmt.Errorf("no static file %q", name)
}

func (s *Server) static(c *fiber.Ctx) error {
	x, ok := s.assets.byName[c.Params("name")]
	if !ok {
		return s.notFound(c)
	}
	c.Set(fiber.HeaderCacheControl, "public, max-age=31536000, immutable")
	c.Set(fiber.HeaderETag, x.etag)
	if c.Get(fiber.HeaderIfNoneMatch) == x.etag {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, x.ctype)
	c.Response().SetBodyRaw(x.body)
	return nil
}

// views are the parsed pages: each page file joined with the layout.
type views struct{ pages map[string]*template.Template }

const layoutFile = "templates/layout.html"

func loadViews(a *assets) (*views, error) {
	funcs := templateFuncs(a)
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, layoutFile)
	if err != nil {
		return nil, fmt.Errorf("console: layout template: %w", err)
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	v := &views{pages: map[string]*template.Template{}}
	for _, f := range files {
		if f == layoutFile {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := t.ParseFS(templateFS, f); err != nil {
			return nil, fmt.Errorf("console: template %s: %w", f, err)
		}
		v.pages[strings.TrimSuffix(path.Base(f), ".html")] = t
	}
	return v, nil
}

// page is what every page template gets.
type page struct {
	Title string
	// Nav names the navigation entry to mark current.
	Nav string
	// Who is the signed-in person; nil on the setup and login pages.
	Who *apitype.Whoami
	// CSRF is the session's token for forms and the meta tag.
	CSRF string
	// Live tells the page's script what to keep up to date.
	Live string
	// LiveID is the agent or task the live parts follow.
	LiveID string
	// Notice says what just happened; Error what went wrong and what to
	// do next.
	Notice string
	Error  string
	D      any
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render executes a page into a pooled buffer, so that a failing
// template never sends half a page.
func (s *Server) render(c *fiber.Ctx, status int, name string, p *page) error {
	t, ok := s.views.pages[name]
	if !ok {
		return fmt.Errorf("console: no page template %q", name)
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := t.ExecuteTemplate(buf, "layout.html", p); err != nil {
		return fmt.Errorf("console: rendering %s: %w", name, err)
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	c.Response().SetBody(buf.Bytes()) // copies: the buffer goes back to the pool
	return nil
}

// renderBytes executes a page into a buffer of its own, for a page that
// is kept (see dashboardMemo).
func (s *Server) renderBytes(name string, p *page) ([]byte, error) {
	t, ok := s.views.pages[name]
	if !ok {
		return nil, fmt.Errorf("console: no page template %q", name)
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if err := t.ExecuteTemplate(buf, "layout.html", p); err != nil {
		return nil, fmt.Errorf("console: rendering %s: %w", name, err)
	}
	return bytes.Clone(buf.Bytes()), nil
}

func templateFuncs(a *assets) template.FuncMap {
	return template.FuncMap{
		"asset":      a.url,
		"can":        can,
		"when":       fmtTime,
		"bytes":      fmtBytes,
		"pretty":     prettyJSON,
		"stateClass": stateClass,
		"join":       strings.Join,
		"pct":        func(f float64) string { return fmt.Sprintf("%.1f %%", f) },
		"sortedKeys": sortedKeys,
		"jsonValue":  jsonValue,
	}
}

func fmtTime(t any) string {
	var v time.Time
	switch x := t.(type) {
	case time.Time:
		v = x
	case *time.Time:
		if x == nil {
			return "—"
		}
		v = *x
	default:
		return ""
	}
	if v.IsZero() {
		return "—"
	}
	return v.UTC().Format("2006-01-02 15:04:05 UTC")
}

func fmtBytes(n any) string {
	var v float64
	switch x := n.(type) {
	case uint64:
		v = float64(x)
	case int64:
		v = float64(x)
	case int:
		v = float64(x)
	case float64:
		v = x
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// prettyJSON indents raw JSON for a <pre>; html/template escapes it.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// jsonValue shows a configuration value: strings as they are, anything
// else as compact JSON.
func jsonValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// stateClass maps an agent or task state onto the few badge styles.
func stateClass(state string) string {
	switch strings.ToLower(state) {
	case "running", "succeeded", "pass", "intact", "verified", "ok":
		return "good"
	case "pending", "backoff", "deleting", "warn", "self-consistent", "empty":
		return "warn"
	case "crash-loop", "failed", "fail", "broken", "truncated", "timed_out", "unknown":
		return "bad"
	}
	return "neutral"
}
