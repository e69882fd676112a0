package agents

import (
	"context"
	"fmt"
)

// maxStates bounds the distinct states CountByState returns: the
// reconciler writes only those of States, and a database holding more is
// one that something else wrote.
const maxStates = 32

// CountByState counts the agents (deleted ones until their deletion
// completes, as List shows them) by their observed state, from the status
// rows alone: the dashboard asks on every load, and List would read and
// decode every manifest for it.
func (s *Service) CountByState(ctx context.Context) (map[State]int, error) {
	rows, err := s.st.Read().QueryContext(ctx,
		"SELECT s.state, count(*) FROM agents a JOIN agent_status s ON s.agent_id = a.id GROUP BY s.state ORDER BY s.state LIMIT ?",
		maxStates+1)
	if err != nil {
		return nil, fmt.Errorf("counting agents by state: %w", err)
	}
	defer rows.Close()
	out := make(map[State]int, len(States))
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("counting agents by state: %w", err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting agents by state: %w", err)
	}
	if len(out) > maxStates {
		return nil, fmt.Errorf("counting agents by state: more than %d distinct states in the database", maxStates)
	}
	return out, nil
}
