package loadtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// target is one URL under load, with the header each client sends.
type target struct {
	name    string
	url     string
	headers []string // "Name: value", one per client; empty for the floor
	// unix, when set, is omertad's socket: the request goes there, as
	// the console's own calls do, instead of over TLS.
	unix string
}

// result is what one run measured.
type result struct {
	name      string
	clients   int
	elapsed   time.Duration
	lat       []time.Duration // sorted
	errors    int
	firstErr  string
	bodyBytes int // of the last good answer
	// cpu is the CPU time the console and omertad spent during the run.
	cpu [2]time.Duration
}

// cpuPer is d per request answered, in milliseconds.
func (r result) cpuPer(d time.Duration) string {
	if len(r.lat) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)/float64(len(r.lat)))
}

func (r result) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, len(r.lat)*p/100)]
}

func (r result) rps() float64 { return float64(len(r.lat)+r.errors) / r.elapsed.Seconds() }

// pinned is a TLS client configuration that accepts exactly the
// certificate whose SHA-256 is fp, as a person who compared the
// fingerprint would.
func pinned(fp [sha256.Size]byte) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pin below
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || sha256.Sum256(raw[0]) != fp {
				return errors.New("not the pinned certificate")
			}
			return nil
		},
	}
}

// hammer runs clients loops for d, each on its own keep-alive connection,
// each request timed from its start to the last byte of its answer. An
// answer other than 200 with a body of want bytes (0: any) is an error.
func hammer(ctx context.Context, tg target, clients int, d time.Duration, tc *tls.Config, want int) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	res := result{name: tg.name, clients: clients}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			header := ""
			if len(tg.headers) > 0 {
				header = tg.headers[i%len(tg.headers)]
			}
			lat, errs, first, n := client(ctx, tg, header, tc, want)
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			if res.firstErr == "" {
				res.firstErr = first
			}
			if n > 0 {
				res.bodyBytes = n
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res
}

// client is one of hammer's loops.
func client(ctx context.Context, tg target, header string, tc *tls.Config, want int) (lat []time.Duration, errs int, first string, n int) {
	tr := &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, ForceAttemptHTTP2: false}
	if tg.unix != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", tg.unix)
		}
	}
	defer tr.CloseIdleConnections()
	hk, hv, _ := strings.Cut(header, ": ")
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var buf bytes.Buffer
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, tg.url, nil)
		if hk != "" {
			req.Header.Set(hk, hv)
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err == nil {
			buf.Reset()
			_, err = io.Copy(&buf, resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != http.StatusOK || (want > 0 && buf.Len() != want)) {
				err = fmt.Errorf("HTTP %d, %d bytes (want 200, %d bytes): %.200s", resp.StatusCode, buf.Len(), want, buf.Bytes())
			}
		}
		if err != nil {
			errs++
			if first == "" {
				first = err.Error()
			}
			continue
		}
		lat = append(lat, time.Since(t0))
		n = buf.Len()
	}
	return lat, errs, first, n
}
