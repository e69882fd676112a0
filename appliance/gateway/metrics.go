package gateway

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Gateway's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	cost     *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	attempts *prometheus.CounterVec
	view     *gatewayCollector
}

func newMetrics(g *Gateway) *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omerta_gateway_requests_total",
			Help: "Requests from agents by model (registry names only; others are \"unknown\") and outcome code (\"ok\" when a backend answered).",
		}, []string{"agent", "model", "code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omerta_gateway_tokens_total",
			Help: "Tokens the backends reported, by kind (prompt, completion), and tokens charged to budgets (charged: reported, or the estimate when a backend reported none).",
		}, []string{"agent", "kind"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omerta_gateway_cost_usd_total",
			Help: "Spend at the registry's prices.",
		}, []string{"agent"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "omerta_gateway_request_seconds",
			Help:    "Time from a request's arrival to its last byte answered, by endpoint.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"endpoint"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omerta_gateway_backend_attempts_total",
			Help: "Requests sent to each backend by outcome (ok, error, timeout, status_5xx, bad_answer).",
		}, []string{"backend", "outcome"}),
		view: &gatewayCollector{g: g,
			breaker: prometheus.NewDesc("omerta_gateway_breaker_state", "Each backend's circuit: 0 closed, 1 half-open, 2 open.", []string{"backend"}, nil),
			budget: prometheus.NewDesc("omerta_gateway_budget_used", "Charges this month by scope (agent, tenant) and unit (tokens, usd).",
				[]string{"scope", "id", "unit"}, nil),
			pending: prometheus.NewDesc("omerta_gateway_usage_pending", "Usage records not yet written to the database.", nil, nil),
			dropped: prometheus.NewDesc("omerta_gateway_usage_dropped_total", "Usage records dropped because the database did not take them in time.", nil, nil),
		},
	}
}

// modelLabel keeps a hostile client's model names out of the label set.
func modelLabel(reg *Registry, model string) string {
	if reg != nil && reg.Model(model) != nil {
		return model
	}
	return "unknown"
}

// Collectors returns the Gateway's Prometheus collectors, for the
// daemon's registry (reg.MustRegister(g.Collectors()...)).
func (g *Gateway) Collectors() []prometheus.Collector {
	m := g.met
	return []prometheus.Collector{m.requests, m.tokens, m.cost, m.latency, m.attempts, m.view}
}

// gatewayCollector reports what lives in memory: breakers, budgets and
// the usage queue; a scrape never reads the database.
type gatewayCollector struct {
	g                                 *Gateway
	breaker, budget, pending, dropped *prometheus.Desc
}

func (c *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.breaker, c.budget, c.pending, c.dropped} {
		ch <- d
	}
}

func (c *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.g.breakerStates() {
		ch <- prometheus.MustNewConstMetric(c.breaker, prometheus.GaugeValue, float64(st), name)
	}
	for key, s := range c.g.budgets.snapshot(c.g.now()) {
		kind, id, _ := strings.Cut(key, "/")
		scope := "agent"
		if kind == "t" {
			scope = "tenant"
		}
		ch <- prometheus.MustNewConstMetric(c.budget, prometheus.GaugeValue, float64(s.tokens), scope, id, "tokens")
		ch <- prometheus.MustNewConstMetric(c.budget, prometheus.GaugeValue, nanoToUSD(s.cost), scope, id, "usd")
	}
	pending, dropped := c.g.rec.counts()
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(dropped))
}
