package netpolicy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Upstream resolves what the policy allows. The default asks the
// configured resolvers over UDP (TCP when the answer is truncated) from
// omertad's own network namespace.
type Upstream interface {
	Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error)
}

// ErrUpstream: no upstream resolver gave a usable answer.
var ErrUpstream = errors.New("no upstream resolver answered")

type clientUpstream struct {
	addrs    []string
	udp, tcp *dns.Client
}

func newClientUpstream(addrs []string, timeout time.Duration) *clientUpstream {
	return &clientUpstream{
		addrs: addrs,
		udp:   &dns.Client{Net: "udp", UDPSize: maxUDPAnswer, Timeout: timeout},
		tcp:   &dns.Client{Net: "tcp", Timeout: timeout},
	}
}

func (u *clientUpstream) Exchange(ctx context.Context, q *dns.Msg) (*dns.Msg, error) {
	var errs error
	for _, a := range u.addrs {
		r, _, err := u.udp.ExchangeContext(ctx, q, a)
		if err == nil && r.Truncated {
			r, _, err = u.tcp.ExchangeContext(ctx, q, a)
		}
		if err == nil {
			if err = matches(q, r); err == nil {
				return r, nil
			}
		}
		errs = errors.Join(errs, fmt.Errorf("resolver %s: %w", a, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrUpstream, errs)
}

// matches checks that r answers q (the client already checked the id).
func matches(q, r *dns.Msg) error {
	if !r.Response || len(r.Question) != 1 || r.Question[0].Qtype != q.Question[0].Qtype ||
		!strings.EqualFold(r.Question[0].Name, q.Question[0].Name) {
		return errors.New("the reply does not answer the question asked")
	}
	return nil
}
