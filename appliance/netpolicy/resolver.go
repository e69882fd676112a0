package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"
)

// Timeouts of the resolver's own sockets.
const (
	resolverIO      = 2 * time.Second
	resolverIdle    = 5 * time.Second
	maxTCPQueries   = 32 // per connection
	resolverStartup = 5 * time.Second
)

// resolver is the agents' DNS server on the gateway address.
type resolver struct {
	m        *Manager
	udp, tcp *dns.Server
	sem      chan struct{}
	cache    *answerCache
	wg       sync.WaitGroup
	logFail  rate.Sometimes
}

func newResolver(m *Manager) *resolver {
	return &resolver{m: m, sem: make(chan struct{}, m.cfg.Limits.Queries),
		cache: newAnswerCache(m.cfg.Limits.CacheEntries), logFail: rate.Sometimes{Interval: 10 * time.Second}}
}

// start binds UDP and TCP in ns (the sockets stay there) and serves.
func (r *resolver) start(ns netns.NsHandle, addr netip.AddrPort) error {
	var pc net.PacketConn
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", addr.String()); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp4", addr.String()); err != nil {
			pc.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("starting the agents' resolver on %s: %w", addr, err)
	}
	r.udp = &dns.Server{PacketConn: pc, Handler: r, UDPSize: maxUDPAnswer, ReadTimeout: resolverIO,
		WriteTimeout: resolverIO, MsgAcceptFunc: acceptQuery}
	r.tcp = &dns.Server{Listener: netutil.LimitListener(ln, r.m.cfg.Limits.TCPConns), Handler: r,
		ReadTimeout: resolverIO, WriteTimeout: resolverIO, IdleTimeout: func() time.Duration { return resolverIdle },
		MaxTCPQueries: maxTCPQueries, MsgAcceptFunc: acceptQuery}
	for _, s := range []*dns.Server{r.udp, r.tcp} {
		if err := r.serve(s); err != nil {
			r.stop()
			return fmt.Errorf("starting the agents' resolver on %s: %w", addr, err)
		}
	}
	return nil
}

// serve runs s and returns once it is serving (so that stop can shut it
// down) or has failed.
func (r *resolver) serve(s *dns.Server) error {
	up, failed := make(chan struct{}), make(chan error, 1)
	s.NotifyStartedFunc = func() { close(up) }
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := s.ActivateAndServe(); err != nil {
			failed <- err
		}
	}()
	select {
	case <-up:
		return nil
	case err := <-failed:
		return err
	case <-time.After(resolverStartup):
		return errors.New("the DNS server did not start")
	}
}

func (r *resolver) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), resolverIO)
	defer cancel()
	var errs []error
	for _, s := range []*dns.Server{r.udp, r.tcp} {
		if s != nil {
			errs = append(errs, s.ShutdownContext(ctx))
		}
	}
	r.wg.Wait()
	return errors.Join(errs...)
}

// ServeDNS answers one query.
func (r *resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	if resp := r.answer(netAddr(w.RemoteAddr()), req, tcp); resp != nil {
		_ = w.WriteMsg(resp) // a client that left gets nothing
	}
}

func netAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// answer decides a query from src. Unknown sources, and agents over
// their rate or concurrency, are refused before anything is parsed
// further.
func (r *resolver) answer(src netip.Addr, req *dns.Msg, tcp bool) *dns.Msg {
	m := r.m
	m.mu.RLock()
	s := m.byAddr[src]
	m.mu.RUnlock()
	if s == nil {
		m.stats.refused.Add(1)
		return fit(reply(req, dns.RcodeRefused), req, tcp)
	}
	m.stats.queries.Add(1)
	if reason := r.admit(s); reason != "" {
		m.stats.refused.Add(1)
		m.deny(s, req, reason)
		return fit(reply(req, dns.RcodeRefused), req, tcp)
	}
	defer s.inflight.Add(-1)
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	default:
		m.stats.refused.Add(1)
		m.deny(s, req, "too many queries in flight on the resolver")
		return fit(reply(req, dns.RcodeRefused), req, tcp)
	}
	return fit(r.resolve(s, req), req, tcp)
}

// admit applies the agent's own rate and concurrency bounds.
func (r *resolver) admit(s *agentState) string {
	if !s.limiter.Allow() {
		return "over the agent's query rate"
	}
	if s.inflight.Add(1) > int32(r.m.cfg.Limits.QueriesPerAgent) {
		s.inflight.Add(-1)
		return "too many queries in flight from the agent"
	}
	return ""
}

func (r *resolver) resolve(s *agentState, req *dns.Msg) *dns.Msg {
	m := r.m
	q, rcode, ok := checkQuery(req)
	if !ok {
		m.stats.refused.Add(1)
		return reply(req, rcode)
	}
	rules := s.rules.Load()
	if q.name == "" || !rules.allows(q.name) {
		m.stats.denied.Add(1)
		m.deny(s, req, "not allowed by the agent's egress policy")
		return reply(req, dns.RcodeNameError)
	}
	if q.qtype != dns.TypeA {
		// The agents' network is IPv4 only: other types get an empty
		// answer, so that clients fall back to A.
		m.stats.answered.Add(1)
		return reply(req, dns.RcodeSuccess)
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.UpstreamTimeout*time.Duration(len(m.cfg.Upstreams)))
	defer cancel()
	rrs, rcode, ttl, err := r.lookup(ctx, q.name)
	if err != nil {
		m.stats.failed.Add(1)
		r.logFail.Do(func() { m.log.Warn("agents' resolver: upstream failed", "name", q.name, "error", err) })
		return reply(req, dns.RcodeServerFailure)
	}
	if rcode != dns.RcodeSuccess {
		m.stats.answered.Add(1)
		return reply(req, rcode)
	}
	ans, addrs := agentAnswer(rrs, addrPolicy{subnet: m.cfg.Subnet, allowPrivate: m.cfg.AllowPrivateAnswers, rules: rules}, seconds(ttl))
	if len(addrs) == 0 && len(rrs) > 0 {
		m.deny(s, req, "resolved only to addresses agents may not be given (private, loopback, the agents' subnet)")
	}
	if len(addrs) > 0 {
		if err := m.allowResolved(s, q.name, addrs, ttl); err != nil {
			m.stats.failed.Add(1)
			m.deny(s, req, err.Error())
			if errors.Is(err, errDeniedNw) {
				return reply(req, dns.RcodeNameError)
			}
			return reply(req, dns.RcodeServerFailure)
		}
	}
	m.stats.answered.Add(1)
	resp := reply(req, dns.RcodeSuccess)
	resp.Answer = ans
	return resp
}

// lookup resolves name's A records through the cache or the upstream. ttl
// is what is left of the bounded TTL.
func (r *resolver) lookup(ctx context.Context, name string) ([]dns.RR, int, time.Duration, error) {
	now := r.m.now()
	if c, ok := r.cache.get(name, now); ok {
		return c.rrs, c.rcode, c.until.Sub(now).Truncate(time.Second), nil
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	q.SetEdns0(maxUDPAnswer, false)
	resp, err := r.m.upstream.Exchange(ctx, q)
	if err != nil {
		return nil, 0, 0, err
	}
	var c cachedAnswer
	switch resp.Rcode {
	case dns.RcodeSuccess:
		c.rrs = chainAnswer(name, resp.Answer)
		c.until = now.Add(r.m.cfg.ttl(minTTL(c.rrs)))
	case dns.RcodeNameError:
		c.rcode = dns.RcodeNameError
		c.until = now.Add(r.m.cfg.MinTTL)
	default:
		return nil, 0, 0, fmt.Errorf("%w: the upstream answered %s", ErrUpstream, dns.RcodeToString[resp.Rcode])
	}
	r.cache.put(name, c, now)
	return c.rrs, c.rcode, c.until.Sub(now), nil
}

func seconds(d time.Duration) uint32 { return uint32((d + time.Second - 1) / time.Second) }

func reply(req *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.RecursionAvailable = true
	return resp
}

// fit sizes the reply for the transport: 512 bytes over UDP, or the
// client's EDNS size up to 1232.
func fit(resp, req *dns.Msg, tcp bool) *dns.Msg {
	opt := req.IsEdns0()
	if opt != nil {
		resp.SetEdns0(maxUDPAnswer, false)
	}
	size := dns.MaxMsgSize
	if !tcp {
		size = dns.MinMsgSize
		if opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPAnswer)
		}
	}
	resp.Truncate(size)
	return resp
}

func (m *Manager) deny(s *agentState, req *dns.Msg, reason string) {
	name := ""
	if len(req.Question) > 0 {
		name = req.Question[0].Name
	}
	m.denials.add(Denial{At: m.now(), Agent: s.id, Name: name, Reason: reason})
}
