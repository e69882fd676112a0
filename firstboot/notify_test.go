package firstboot

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSdNotifyStatus runs first boot with go-systemd's real SdNotify against
// a unixgram socket standing in for systemd's.
func TestSdNotifyStatus(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	// Read while first boot runs: a unix datagram socket queues only a
	// few messages (net.unix.max_dgram_qlen) before the sender blocks.
	msgs := make(chan []string)
	go func() {
		var got []string
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				msgs <- got
				return
			}
			got = append(got, string(buf[:n]))
		}
	}()

	root := newTestRoot(t, nil)
	opts := testOptions(root, nil)
	opts.Notify = nil // the production path
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	got := <-msgs

	want := []string{"STATUS=First boot: attempt 1"}
	for i, n := range StepNames() {
		want = append(want, "STATUS=First boot: step "+string(rune('0'+i+1))+"/9 "+n)
	}
	want[len(want)-1] = "STATUS=First boot: step 9/9 done"
	want = append(want, "STATUS=First boot complete")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
