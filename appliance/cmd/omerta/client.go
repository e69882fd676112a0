package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/config"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// apiFlags are the flags of every command that talks to omertad.
type apiFlags struct {
	socket string
	json   bool
	remote remoteFlags
	// socketOnly: no remote flags (the console itself is omertad's front).
	socketOnly bool
}

func (f *apiFlags) add(cmd *cobra.Command, withJSON bool) {
	cmd.Flags().StringVar(&f.socket, "socket", "", "omertad's API socket (default: daemon.socket of "+config.DefaultPath+", else "+config.Default().Daemon.Socket+")")
	if withJSON {
		cmd.Flags().BoolVar(&f.json, "json", false, "print JSON for scripts instead of a table")
	}
	if !f.socketOnly {
		f.remote.add(cmd)
	}
}

// client connects to the console at --url (or OMERTA_URL) with a token,
// else to omertad's socket: --socket, else the site configuration's
// daemon.socket, else the default. Calls are bounded by timeout.
func (f *apiFlags) client(timeout time.Duration) (*apiclient.Client, error) {
	if !f.socketOnly {
		if c, ok, err := f.remote.client(timeout, f.socket != ""); ok || err != nil {
			return c, err
		}
	}
	sock := f.socket
	if sock == "" {
		cfg, err := config.Load(config.DefaultPath)
		if err != nil && !errors.Is(err, config.ErrNotFound) {
			return nil, fmt.Errorf("finding omertad's socket (or give --socket): %w", err)
		}
		sock = cfg.Daemon.Socket
	}
	return apiclient.New(sock, apiclient.WithTimeout(timeout)), nil
}

// defaultCallTimeout bounds a CLI call that is not a stream, an import or
// a task.
const defaultCallTimeout = time.Minute

// explain adds what a person can do about an error reaching omertad.
func explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (is omertad running? the socket can be given with --socket)", err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w (the socket is for root and the members of daemon.socket_group)", err)
	}
	if e, ok := explainRemote(err); ok {
		return e
	}
	var inv *apiclient.InvalidError
	if errors.As(err, &inv) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s: refused:", inv.Err.Method, inv.Err.Path)
		for _, p := range inv.Problems {
			b.WriteString("\n  ")
			if p.Path != "" {
				b.WriteString(terminal.Escape(p.Path) + ": ")
			}
			b.WriteString(terminal.Escape(p.Reason))
		}
		return errors.New(b.String())
	}
	return err
}

// showCall makes one call to omertad as f's flags say and prints its
// answer: as JSON with --json, else with show. It is the whole of a read
// command; call is often a method expression such as
// (*apiclient.Client).Tenants.
func showCall[T any](cmd *cobra.Command, f *apiFlags, call func(*apiclient.Client, context.Context) (T, error), show func(io.Writer, T) error) error {
	c, err := f.client(defaultCallTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	v, err := call(c, cmd.Context())
	if err != nil {
		return explain(err)
	}
	if f.json {
		return printJSON(cmd.OutOrStdout(), v)
	}
	return show(cmd.OutOrStdout(), v)
}

// printJSON writes v as indented JSON, with every character a terminal
// would act on escaped as \uXXXX: encoding/json leaves DEL, C1 controls and
// bidi overrides as they are, and scripts' output is often read by people.
func printJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding JSON output: %w", err)
	}
	_, err := w.Write(jsonSafe(buf.Bytes()))
	return err
}

// jsonSafe escapes, in JSON text, each rune terminal.Unsafe reports. Such
// runes occur only inside strings (JSON's own syntax is plain ASCII) and
// encoding/json has already replaced invalid UTF-8, so \uXXXX (a surrogate
// pair above U+FFFF) keeps the JSON valid and equal.
func jsonSafe(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == '\n' || !terminal.Unsafe(r) {
			out = append(out, b[:size]...)
		} else if r > 0xffff {
			r1, r2 := utf16Pair(r)
			out = append(out, fmt.Sprintf(`\u%04x\u%04x`, r1, r2)...)
		} else {
			out = append(out, fmt.Sprintf(`\u%04x`, r)...)
		}
		b = b[size:]
	}
	return out
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

// table writes rows under a header, each cell escaped and cut to width
// runes (0: not cut).
type table struct {
	tw    *tabwriter.Writer
	width int
}

func newTable(w io.Writer, width int, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0), width: width}
	t.tw.Write([]byte(strings.Join(header, "\t") + "\n"))
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c, t.width)
	}
	t.tw.Write([]byte(strings.Join(cells, "\t") + "\n"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cell is a foreign string made fit for a table cell: escaped (tabs and
// newlines too, which would break the columns), cut to width runes.
func cell(s string, width int) string {
	s = terminal.Escape(s)
	if s == "" {
		return "-"
	}
	if width > 0 && utf8.RuneCountInString(s) > width {
		rs := []rune(s)
		s = string(rs[:width-1]) + "…"
	}
	return s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// since shows how long ago t was, for tables.
func since(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
