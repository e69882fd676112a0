package netpolicy

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// benchSeq keeps the names of the upstream case unique across the
// benchmark's runs, so that every query misses the cache and opens a new
// address in the kernel.
var benchSeq int

// BenchmarkResolverAnswer measures a resolver answer as an agent sees it,
// from its namespace over UDP (target: under 1 ms). "cached": an allowed
// name already answered, whose address is open (no upstream, no kernel
// write). "upstream": a new name each time, resolved by the upstream on
// loopback and opened in the agent's nftables set before the answer.
func BenchmarkResolverAnswer(b *testing.B) {
	e := newTestEnv(b, func(c *Config) {
		c.Limits.ResolvedPerAgent, c.Limits.QueryRate, c.Limits.QueryBurst = 65536, 1e6, 1<<20
	})
	a := e.attach("a1", Egress{Names: []string{"*.bench.test", "allowed.test"}})
	var conn net.Conn
	must(b, inNetns(a.ns, func() (err error) { conn, err = net.Dial("udp4", e.m.ResolverAddr().String()); return err }))
	defer conn.Close()
	co := &dns.Conn{Conn: conn}
	exchange := func(name string) {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		co.SetDeadline(time.Now().Add(2 * time.Second))
		if err := co.WriteMsg(q); err != nil {
			b.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			b.Fatalf("%s: %v %v", name, r, err)
		}
	}
	run := func(b *testing.B, name func() string) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			n := name()
			t0 := time.Now()
			exchange(n)
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/answer")
	}
	b.Run("cached", func(b *testing.B) {
		exchange("allowed.test.")
		run(b, func() string { return "allowed.test." })
	})
	b.Run("upstream", func(b *testing.B) {
		run(b, func() string { benchSeq++; return fmt.Sprintf("n%d.bench.test.", benchSeq%60000) })
	})
}
