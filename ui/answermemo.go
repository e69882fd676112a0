package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
)

// maxMemoAnswer bounds an answer the dashboard reads raw: the report and
// its verification (omertad caps the report at 4 MiB), or the probe.
const maxMemoAnswer = 8 << 20

// answerMemo remembers the dashboard's view of the last answer seen to
// one GET: the first-boot report (tens of kilobytes of JSON, decoded for
// a dozen fields; it was most of the console's work per dashboard) and
// the probe. Both change seldom (the report once in the appliance's life,
// the probe at each probe interval). Every dashboard still asks omertad
// for the answer with its own session, and omertad decides who may read
// it; only the decoding of the very same bytes is saved.
type answerMemo[T any] struct {
	path string
	// view decodes an answer and makes the page's view of it.
	view func([]byte) (T, error)
	// typed is the call of the API client, for a backend that cannot
	// forward raw and for any answer but a plain 200 (the page explains
	// its error).
	typed func(context.Context, API) (T, error)

	mu  sync.Mutex
	raw []byte
	v   T
}

// get is the view of omertad's answer to a's call.
func (m *answerMemo[T]) get(ctx context.Context, a API) (T, error) {
	fw, ok := a.(Forwarder)
	if !ok {
		return m.typed(ctx, a)
	}
	resp, err := fw.Forward(ctx, http.MethodGet, m.path, http.Header{"Accept": {fiberJSON}}, nil, false)
	if err != nil {
		return m.typed(ctx, a)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m.typed(ctx, a)
	}
	m.mu.Lock()
	kept, v := m.raw, m.v // a kept answer is never changed, only replaced
	m.mu.Unlock()
	raw, same, err := readUnlessSame(resp, kept, maxMemoAnswer)
	if err != nil {
		return m.typed(ctx, a)
	}
	if same {
		return v, nil
	}
	if v, err = m.view(raw); err != nil {
		return m.typed(ctx, a)
	}
	m.mu.Lock()
	m.raw, m.v = raw, v
	m.mu.Unlock()
	return v, nil
}

// compareBufs are the buffers readUnlessSame reads into.
var compareBufs = sync.Pool{New: func() any { return new([16 << 10]byte) }}

// readUnlessSame reads an answer of at most limit bytes. When it is, byte
// for byte, kept, it says so and keeps no copy: the common case costs a
// comparison, not an allocation of the answer's size. Otherwise it
// returns the answer.
func readUnlessSame(resp *http.Response, kept []byte, limit int64) ([]byte, bool, error) {
	r := io.LimitReader(resp.Body, limit+1)
	if cl := resp.ContentLength; kept == nil || (cl >= 0 && cl != int64(len(kept))) {
		return readAllSized(r, resp.ContentLength, limit)
	}
	buf := compareBufs.Get().(*[16 << 10]byte)
	defer compareBufs.Put(buf)
	off := 0
	for {
		n, err := r.Read(buf[:])
		if n > 0 {
			if off+n > len(kept) || !bytes.Equal(buf[:n], kept[off:off+n]) {
				// It differs from here on: the rest is read whole.
				head := make([]byte, 0, len(kept)+1)
				head = append(append(head, kept[:off]...), buf[:n]...)
				rest, err := io.ReadAll(r)
				b := append(head, rest...)
				if err == nil && int64(len(b)) > limit {
					err = errTooLarge
				}
				return b, false, err
			}
			off += n
		}
		if errors.Is(err, io.EOF) {
			if off != len(kept) { // shorter: what came is the answer
				return bytes.Clone(kept[:off]), false, nil
			}
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// errTooLarge is an answer past maxMemoAnswer.
var errTooLarge = errors.New("answer too large")

// readAllSized reads r whole, into one buffer when its size is known.
func readAllSized(r io.Reader, size, limit int64) ([]byte, bool, error) {
	var buf bytes.Buffer
	if size >= 0 && size <= limit {
		buf.Grow(int(size) + 1)
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, false, err
	}
	if int64(buf.Len()) > limit {
		return nil, false, errTooLarge
	}
	return buf.Bytes(), false, nil
}

// decodeView decodes an answer of type A and makes a view of it.
func decodeView[A, T any](view func(A) T) func([]byte) (T, error) {
	return func(b []byte) (T, error) {
		var a A
		if err := json.Unmarshal(b, &a); err != nil {
			var zero T
			return zero, err
		}
		return view(a), nil
	}
}

func newReportMemo() *answerMemo[reportSummary] {
	return &answerMemo[reportSummary]{path: "/api/v1/report", view: decodeView(summarizeReport),
		typed: func(ctx context.Context, a API) (reportSummary, error) {
			r, err := a.Report(ctx)
			return summarizeReport(r), err
		}}
}

func newProbeMemo() *answerMemo[probeSummary] {
	return &answerMemo[probeSummary]{path: "/api/v1/probe", view: decodeView(summarizeProbe),
		typed: func(ctx context.Context, a API) (probeSummary, error) {
			p, err := a.Probe(ctx)
			return summarizeProbe(p), err
		}}
}
