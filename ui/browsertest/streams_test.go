package browsertest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// abandoned is more streams than omertad and the console serve at once
// (api.DefaultMaxStreams and ui.DefaultLimits.Streams, 32 each): a
// browser that walks through that many live pages leaves that many
// streams behind, one per page it left.
const abandoned = 40

// TestAbandonedStreamsFreeSlots: a stream whose reader went away must
// give its slot back at once, not at the next heartbeat. A person who
// clicks through live pages (each opens an event stream, the agent page a
// log stream too) leaves one dead stream per page; while dead streams
// hold the slots the next page's stream is refused with 503, and a
// browser's EventSource does not retry after an error status, so that
// page's live view stays dead. Found by TestBrowser, which fails now and
// then when this happens.
func TestAbandonedStreamsFreeSlots(t *testing.T) {
	requireBrowser(t)
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := s.api.Setup(ctx, apitype.SetupRequest{Token: s.fb.token, Username: "ada", Password: password(t)})
	if err != nil {
		t.Fatal(err)
	}
	omertad := func() (net.Conn, error) { return net.Dial("unix", s.sock) }
	t.Run("omertad", func(t *testing.T) { checkSlotsFreed(t, omertad, "omertad", "") })
	// The console's streams are omertad's streams too: the next subtest
	// starts when omertad serves streams again.
	waitSlotFree(t, omertad)
	t.Run("console", func(t *testing.T) {
		dial := func() (net.Conn, error) {
			return tls.Dial("tcp", s.cons.addr, &tls.Config{InsecureSkipVerify: true}) // pinned in newStack
		}
		checkSlotsFreed(t, dial, s.cons.addr, "Cookie: __Host-omerta_session="+sess.SessionID+"\r\n")
	})
}

// waitSlotFree waits until omertad serves an event stream again, and says
// how long that took.
func waitSlotFree(t *testing.T, dial func() (net.Conn, error)) {
	start := time.Now()
	for {
		status, err := openStream(dial, "omertad", "")
		if err != nil {
			t.Fatal(err)
		}
		if status == http.StatusOK {
			t.Logf("omertad serves streams again after %v", time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("omertad still refuses streams (HTTP %d) a minute after they were dropped", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkSlotsFreed opens and drops abandoned event streams, one after the
// other, then wants one more to be served.
func checkSlotsFreed(t *testing.T, dial func() (net.Conn, error), host, headers string) {
	for i := 0; i <= abandoned; i++ {
		status, err := openStream(dial, host, headers)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK {
			t.Fatalf("event stream %d, after %d were opened and dropped: HTTP %d; dropped streams still hold their slots", i+1, i, status)
		}
	}
}

// openStream asks for the event stream, reads the answer's status line and
// first line of the stream, and hangs up as a browser leaving the page.
func openStream(dial func() (net.Conn, error), host, headers string) (int, error) {
	conn, err := dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /api/v1/events?types=agent.state HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\n" +
		"Sec-Fetch-Site: same-origin\r\n" + headers + "\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reading the status line: %w", err)
	}
	var status int
	if _, err := fmt.Sscanf(line, "HTTP/1.1 %d", &status); err != nil {
		return 0, fmt.Errorf("status line %q: %w", strings.TrimSpace(line), err)
	}
	return status, nil
}
