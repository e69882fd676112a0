package policy

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkEvaluate: one admission decision against a Set of 1000 agent
// policies, 20 categories and 50 tenants, every layer applying, with
// egress, models and secrets to match. Target: under 1 ms.
func BenchmarkEvaluate(b *testing.B) {
	var ps []Policy
	var ts []Tenant
	for i := range 50 {
		name := fmt.Sprintf("t%d", i)
		ts = append(ts, ten(b, name, "{agents: 100, cpu: 64, memory: 256Gi, gpus: 8, vram: 640Gi, tokensPerMonth: 100000000, usdPerMonth: 1000}"))
		ps = append(ps, pol(b, "tenant/"+name, `{network: {egress: ["*.example.com", 10.0.0.0/8, api.openai.com]}, models: {allowed: ["llama*", "gpt-4*", local-echo]}, secrets: ["/crm_*"], max: {memory: 16Gi}}`))
	}
	for i := range 20 {
		ps = append(ps, pol(b, fmt.Sprintf("category/cat%d", i), "{max: {pids: 2048}, gpu: {vram: 80Gi}}"))
	}
	for i := range 1000 {
		ps = append(ps, pol(b, fmt.Sprintf("agent/a%d", i), `{network: {egress: [api.example.com, 10.1.0.0/16]}, models: {allowed: ["llama3*"]}, max: {memory: 8Gi}}`))
	}
	set := NewSet("pro", ps, ts)
	req := baseReq()
	req.Agent, req.Tenant, req.Category = "a500", "t7", "cat3"
	req.Egress = []string{"api.example.com", "10.1.2.3"}
	req.Models = []ModelNeed{{Name: "llama3.2-3b"}}
	req.Secrets = []string{"/crm_api_key"}
	req.Usage = Usage{Agents: 50, CPUMillis: 40000, MemoryBytes: 100 * gi}
	if d := Evaluate(set, req); !d.Allow {
		b.Fatalf("the benchmark's request is refused: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		Evaluate(set, req)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/decision")
}
