package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Bounds of a server-sent event stream: the server is input like any
// other, and a stream is read for as long as it lasts.
const (
	// MaxEventLine bounds one line of the stream.
	MaxEventLine = 1 << 20
	// MaxEventData bounds one event's data (its data lines together).
	MaxEventData = 1 << 20
)

// ErrEventTooLarge is returned (wrapped) for a line or an event over the
// bounds; the stream is unusable after it.
var ErrEventTooLarge = errors.New("event too large")

// sseMessage is one dispatched server-sent event.
type sseMessage struct {
	event string
	id    string
	data  []byte
}

// sseStream reads server-sent events from an answer's body.
type sseStream struct {
	body   io.ReadCloser
	r      *bufio.Reader
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
}

func newSSEStream(body io.ReadCloser, cancel context.CancelFunc) *sseStream {
	return &sseStream{body: body, r: bufio.NewReaderSize(body, 64<<10), cancel: cancel}
}

func (s *sseStream) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cancel()
	return s.body.Close()
}

// next returns the next event, skipping comments; io.EOF at the end of
// the stream.
func (s *sseStream) next() (sseMessage, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return sseMessage{}, ErrStreamClosed
	}
	m, err := readEvent(s.r)
	if err != nil {
		s.mu.Lock()
		if s.closed {
			err = ErrStreamClosed
		}
		s.mu.Unlock()
	}
	return m, err
}

// readEvent reads lines up to a blank one that ends an event with data
// (the format of the WHATWG's EventSource, less the retry field, which a
// client that does not reconnect by itself has no use for).
func readEvent(r *bufio.Reader) (sseMessage, error) {
	var m sseMessage
	var data bytes.Buffer
	hasData := false
	for {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, io.EOF) && hasData {
				return m, io.ErrUnexpectedEOF
			}
			return m, err
		}
		if len(line) == 0 {
			if hasData {
				m.data = data.Bytes()
				return m, nil
			}
			m = sseMessage{}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			m.event = string(value)
		case "id":
			m.id = string(value)
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			if data.Len()+len(value) > MaxEventData {
				return m, fmt.Errorf("event stream: %w: data over %d bytes", ErrEventTooLarge, MaxEventData)
			}
			data.Write(value)
			hasData = true
		}
	}
}

// readLine reads one line without its ending (LF, CRLF or CR alone is not
// accepted as an ending: the server writes LF).
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > MaxEventLine+1 {
			return nil, fmt.Errorf("event stream: %w: a line over %d bytes", ErrEventTooLarge, MaxEventLine)
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			if errors.Is(err, io.EOF) && len(line) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
