package agents

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"testing"
)

// TestCountByStateAgreesWithList: the counts from the status rows are
// those of List, state by state.
func TestCountByStateAgreesWithList(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if got, err := e.s.CountByState(ctx); err != nil || len(got) != 0 {
		t.Fatalf("no agents: %v, %v", got, err)
	}
	e.deploy(t, "a")
	e.deploy(t, "b")
	e.deploy(t, "c")
	if _, err := e.s.Disable(ctx, "b", testActor); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[State]int{StateRunning: 2, StateStopped: 1}; !maps.Equal(got, want) {
		t.Errorf("CountByState = %v, want %v", got, want)
	}
	list, err := e.s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromList := map[State]int{}
	for _, a := range list {
		fromList[a.Status.State]++
	}
	if !maps.Equal(got, fromList) {
		t.Errorf("CountByState = %v, List counts %v", got, fromList)
	}
}

// TestCountByStateBounded: a database with more distinct states than the
// reconciler writes is refused, not returned whole.
func TestCountByStateBounded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := range maxStates + 1 {
		e.deploy(t, fmt.Sprintf("a%d", i))
	}
	err := e.st.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE agent_status SET state = 'odd-' || agent_id")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.s.CountByState(ctx); err == nil {
		t.Errorf("CountByState over %d distinct states = %v, want an error", maxStates+1, got)
	}
}
