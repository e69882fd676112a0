package apitype

import "time"

// DeploySuccessTarget is the seed's target for the deploy success rate:
// at least 98 % of deploys and patches over 7 days succeed.
const DeploySuccessTarget = 0.98

// DeployWindow is the period the deploy success rate is measured over.
const DeployWindow = 7 * 24 * time.Hour

// AgentsSummary is GET /api/v1/summary/agents: the dashboard's agent
// figures, counted by omertad without sending every agent.
type AgentsSummary struct {
	// ByState counts the agents by observed state (the states of
	// AgentStatus); a state no agent is in is absent.
	ByState map[string]int `json:"by_state"`
	Total   int            `json:"total"`
	// Deploys7d is the deploy success KPI over the last DeployWindow.
	Deploys7d DeployStats `json:"deploys_7d"`
	// Target is DeploySuccessTarget, sent so that a client compares
	// against the server's figure, not its own copy.
	Target float64 `json:"target"`
}

// DeployStats counts the deploys and patches whose outcome was recorded
// since Since.
type DeployStats struct {
	Since     time.Time `json:"since"`
	Attempted int       `json:"attempted"`
	Succeeded int       `json:"succeeded"`
	// Rate is Succeeded/Attempted, between 0 and 1; null when nothing
	// was attempted (no deploys is not a 100 % success).
	Rate *float64 `json:"rate"`
}
