package apiclient

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAllEvents(s string) ([]sseMessage, error) {
	r := bufio.NewReaderSize(strings.NewReader(s), 64)
	var out []sseMessage
	for {
		m, err := readEvent(r)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func TestReadEvent(t *testing.T) {
	in := ": omertad events\nretry: 3000\n\nid: 1\nevent: task\ndata: {\"a\":1}\n\n: heartbeat\n\n" +
		"event: multi\ndata: one\ndata: two\r\n\nevent: empty-ignored\n\ndata:no-space\n\n"
	got, err := readAllEvents(in)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want EOF", err)
	}
	want := []sseMessage{{event: "task", id: "1", data: []byte(`{"a":1}`)}, {event: "multi", data: []byte("one\ntwo")}, {data: []byte("no-space")}}
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].event != want[i].event || got[i].id != want[i].id || string(got[i].data) != string(want[i].data) {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// A stream cut inside an event is not an orderly end.
	if _, err := readAllEvents("event: x\ndata: par"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut stream = %v, want ErrUnexpectedEOF", err)
	}
	if _, err := readAllEvents("data: x\n"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("event without its blank line = %v, want ErrUnexpectedEOF", err)
	}
}

// TestReadEventBounds: a server that never ends a line, or sends endless
// data lines, is refused at the bound instead of filling memory.
func TestReadEventBounds(t *testing.T) {
	long := "data: " + strings.Repeat("x", MaxEventLine+10) + "\n\n"
	if _, err := readAllEvents(long); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("long line = %v, want ErrEventTooLarge", err)
	}
	many := strings.Repeat("data: "+strings.Repeat("y", 1000)+"\n", MaxEventData/1000+2) + "\n"
	if _, err := readAllEvents(many); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("endless data = %v, want ErrEventTooLarge", err)
	}
}

func FuzzReadEvent(f *testing.F) {
	for _, s := range []string{
		"event: task\ndata: {}\n\n", ": c\n\n", "data: a\ndata: b\n\n", "id: 3\r\nevent: x\r\ndata: y\r\n\r\n",
		"data", "\n\n\n", "event:\ndata:\n\n", ":\x00\xff\n", "data: " + strings.Repeat("z", 300) + "\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		msgs, err := readAllEvents(s)
		if err == nil {
			t.Fatal("reading ended without an error")
		}
		total := 0
		for _, m := range msgs {
			if len(m.data) > MaxEventData {
				t.Fatalf("event data of %d bytes passed the bound", len(m.data))
			}
			total += len(m.data)
		}
		if total > len(s) {
			t.Fatalf("%d bytes of data from %d bytes of input", total, len(s))
		}
	})
}
