package netpolicy

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/store"
)

// SystemActor is the actor of what omertad does on its own (attach,
// detach, reconcile) in the audit log.
const SystemActor = "omertad"

// maxEgressJSON bounds a stored policy (256 names of 253 bytes and 256
// networks fit well inside).
const maxEgressJSON = 128 << 10

// agentRow is one row of netpolicy_agents.
type agentRow struct {
	ID     string
	Addr   netip.Addr
	Veth   string
	Egress Egress
	Mark   uint32
}

// agentIDRe is what the network is keyed by: the agents domain's
// container id (the agent's id, a DNS label of up to 63 characters, and
// "-g" and its generation), as long as containerd lets an id be (76).
// A DNS label's 63 refused every container of an agent whose id was over
// 59 characters. Chain and set names ("agent-" and the id) stay far
// inside nftables' 256.
var agentIDRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,74}[a-z0-9])?$`)

func checkAgentID(id string) error {
	if !agentIDRe.MatchString(id) {
		return invalid("agent_id", "%s is not an agent's container id (a-z, 0-9 and '-', at most 76 characters)", quote(id))
	}
	return nil
}

// vethName is the host side of id's link, derived from the id so that a
// restarted omertad finds it again.
func vethName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return vethPrefix + hex.EncodeToString(sum[:])[:11]
}

// openNetwork records the subnet on first start and, when the
// configuration names another one, moves every agent to an address in the
// new subnet (their links get it at their next Attach). It returns every
// agent's row.
func (m *Manager) openNetwork(ctx context.Context) ([]agentRow, error) {
	var rows []agentRow
	err := m.st.Write(ctx, func(tx *sql.Tx) error {
		var subnet string
		err := tx.QueryRowContext(ctx, "SELECT subnet FROM netpolicy_network WHERE id = 1").Scan(&subnet)
		now := store.FormatTime(m.now())
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, "INSERT INTO netpolicy_network(id, subnet, next_mark, updated_at) VALUES (1, ?, 1, ?)",
				m.cfg.Subnet.String(), now); err != nil {
				return fmt.Errorf("recording the agents' subnet: %w", err)
			}
			if err := m.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "netpolicy.network.created",
				Target: m.cfg.Bridge, Detail: map[string]any{"subnet": m.cfg.Subnet.String(), "gateway": m.cfg.Gateway().String()}}); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("reading the agents' subnet: %w", err)
		case subnet != m.cfg.Subnet.String():
			if err := m.readdress(ctx, tx, subnet, now); err != nil {
				return err
			}
		}
		rows, err = loadAgents(ctx, tx)
		return err
	})
	return rows, err
}

// readdress gives every agent an address in the configured subnet.
func (m *Manager) readdress(ctx context.Context, tx *sql.Tx, old, now string) error {
	rows, err := loadAgents(ctx, tx)
	if err != nil {
		return err
	}
	if len(rows) > m.cfg.maxAgents() {
		return fmt.Errorf("moving the agents from subnet %s to %s: %w: %d agents, room for %d", old, m.cfg.Subnet, ErrExhausted, len(rows), m.cfg.maxAgents())
	}
	// Two steps, so that no intermediate state breaks UNIQUE (address).
	if _, err := tx.ExecContext(ctx, "UPDATE netpolicy_agents SET address = 'moving:' || agent_id"); err != nil {
		return fmt.Errorf("moving the agents to subnet %s: %w", m.cfg.Subnet, err)
	}
	a := m.cfg.Gateway().Next()
	for _, r := range rows {
		if _, err := tx.ExecContext(ctx, "UPDATE netpolicy_agents SET address = ?, updated_at = ? WHERE agent_id = ?", a.String(), now, r.ID); err != nil {
			return fmt.Errorf("moving agent %s to subnet %s: %w", r.ID, m.cfg.Subnet, err)
		}
		a = a.Next()
	}
	if _, err := tx.ExecContext(ctx, "UPDATE netpolicy_network SET subnet = ?, updated_at = ? WHERE id = 1", m.cfg.Subnet.String(), now); err != nil {
		return fmt.Errorf("recording subnet %s: %w", m.cfg.Subnet, err)
	}
	return m.st.AuditTx(ctx, tx, store.AuditEntry{Actor: SystemActor, Action: "netpolicy.network.readdressed", Target: m.cfg.Bridge,
		Detail: map[string]any{"from": old, "to": m.cfg.Subnet.String(), "agents": len(rows)}})
}

func loadAgents(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]agentRow, error) {
	rs, err := q.QueryContext(ctx, "SELECT agent_id, address, veth, egress, mark FROM netpolicy_agents ORDER BY created_at, agent_id")
	if err != nil {
		return nil, fmt.Errorf("reading the agents' addresses: %w", err)
	}
	defer rs.Close()
	var out []agentRow
	for rs.Next() {
		r, err := scanAgent(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

func scanAgent(s interface{ Scan(...any) error }) (agentRow, error) {
	var r agentRow
	var addr, egress string
	var mark int64
	if err := s.Scan(&r.ID, &addr, &r.Veth, &egress, &mark); err != nil {
		return r, err
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return r, fmt.Errorf("netpolicy_agents.address of agent %s: %s is not an IPv4 address", quote(r.ID), quote(addr))
	}
	r.Addr, r.Mark = a, uint32(mark)
	if len(egress) > maxEgressJSON {
		return r, fmt.Errorf("netpolicy_agents.egress of agent %s: %w", quote(r.ID), &safeio.LimitError{Name: "netpolicy_agents.egress", Limit: maxEgressJSON})
	}
	if err := json.Unmarshal([]byte(egress), &r.Egress); err != nil {
		return r, fmt.Errorf("netpolicy_agents.egress of agent %s: %w", quote(r.ID), err)
	}
	return r, nil
}

// getOrAddAgent returns id's row, adding one with a free address, a fresh
// mark and an empty policy (nothing but the gateway and the resolver) when
// there is none.
func (m *Manager) getOrAddAgent(ctx context.Context, tx *sql.Tx, id, actor string) (agentRow, bool, error) {
	r, err := scanAgent(tx.QueryRowContext(ctx, "SELECT agent_id, address, veth, egress, mark FROM netpolicy_agents WHERE agent_id = ?", id))
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return r, false, err
	}
	addr, err := m.freeAddress(ctx, tx)
	if err != nil {
		return r, false, err
	}
	mark, err := takeMark(ctx, tx)
	if err != nil {
		return r, false, err
	}
	r = agentRow{ID: id, Addr: addr, Veth: vethName(id), Mark: mark}
	now := store.FormatTime(m.now())
	if _, err := tx.ExecContext(ctx, `INSERT INTO netpolicy_agents(agent_id, address, veth, egress, mark, created_at, updated_at)
		VALUES (?, ?, ?, '{}', ?, ?, ?)`, id, addr.String(), r.Veth, int64(mark), now, now); err != nil {
		return r, false, fmt.Errorf("recording the address of agent %s: %w", id, err)
	}
	err = m.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: "netpolicy.agent.added", Target: id,
		Detail: map[string]any{"address": addr.String(), "link": r.Veth}})
	return r, true, err
}

// freeAddress is the lowest address of the subnet no agent holds.
func (m *Manager) freeAddress(ctx context.Context, tx *sql.Tx) (netip.Addr, error) {
	rs, err := tx.QueryContext(ctx, "SELECT address FROM netpolicy_agents")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the agents' addresses: %w", err)
	}
	defer rs.Close()
	used := map[netip.Addr]bool{}
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			return netip.Addr{}, err
		}
		if a, err := netip.ParseAddr(s); err == nil {
			used[a] = true
		}
	}
	if err := rs.Err(); err != nil {
		return netip.Addr{}, err
	}
	if len(used) >= m.cfg.maxAgents() {
		return netip.Addr{}, fmt.Errorf("adding an agent: %w: %d agents, the limit is %d", ErrExhausted, len(used), m.cfg.maxAgents())
	}
	a := m.cfg.Gateway().Next()
	for range m.cfg.hostCount() {
		if !used[a] {
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("adding an agent: %w: all %d addresses of %s are taken", ErrExhausted, m.cfg.hostCount(), m.cfg.Subnet)
}

// takeMark hands out the next conntrack mark.
func takeMark(ctx context.Context, tx *sql.Tx) (uint32, error) {
	var next int64
	if err := tx.QueryRowContext(ctx, "SELECT next_mark FROM netpolicy_network WHERE id = 1").Scan(&next); err != nil {
		return 0, fmt.Errorf("reading the next connection mark: %w", err)
	}
	if next >= 1<<32-1 {
		return 0, fmt.Errorf("handing out a connection mark: %w: all 2^32 marks are used", ErrExhausted)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE netpolicy_network SET next_mark = ? WHERE id = 1", next+1); err != nil {
		return 0, fmt.Errorf("recording the next connection mark: %w", err)
	}
	return uint32(next), nil
}

// storePolicy records id's policy and, when it drops something the old one
// allowed, a fresh mark.
func (m *Manager) storePolicy(ctx context.Context, id, actor string, rules *egressRules, recheck bool) (agentRow, error) {
	var r agentRow
	err := m.st.Write(ctx, func(tx *sql.Tx) error {
		var err error
		if r, _, err = m.getOrAddAgent(ctx, tx, id, actor); err != nil {
			return err
		}
		if recheck {
			if r.Mark, err = takeMark(ctx, tx); err != nil {
				return err
			}
		}
		body, err := json.Marshal(rules.norm)
		if err != nil {
			return err
		}
		r.Egress = rules.norm
		if _, err := tx.ExecContext(ctx, "UPDATE netpolicy_agents SET egress = ?, mark = ?, updated_at = ? WHERE agent_id = ?",
			string(body), int64(r.Mark), store.FormatTime(m.now()), id); err != nil {
			return fmt.Errorf("recording the egress policy of agent %s: %w", id, err)
		}
		return m.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: "netpolicy.policy.set", Target: id,
			Detail: map[string]any{"names": nonNil(rules.norm.Names), "cidrs": nonNil(rules.norm.CIDRs), "rechecked": recheck}})
	})
	return r, err
}

// deleteAgent removes id's row, freeing its address.
func (m *Manager) deleteAgent(ctx context.Context, id, actor string, detail map[string]any) (bool, error) {
	var found bool
	err := m.st.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM netpolicy_agents WHERE agent_id = ?", id)
		if err != nil {
			return fmt.Errorf("releasing the address of agent %s: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		found = true
		return m.st.AuditTx(ctx, tx, store.AuditEntry{Actor: actor, Action: "netpolicy.agent.removed", Target: id, Detail: detail})
	})
	return found, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
