package daemon

import (
	"context"
	"fmt"

	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/store"
)

// chainProblemAction is the audit action recorded at start for a chain that
// is not intact, followed by the state: "audit.chain.broken",
// "audit.chain.truncated", "audit.chain.restarted".
const chainProblemAction = "audit.chain."

// checkChain verifies the audit chain at start. A chain that is broken,
// truncated or restarted is never silent: it is logged as an error, recorded
// in the audit log with what was found, and served by the API (the status
// returned here). omertad still starts, and nothing is repaired: the
// database stays as it was found, evidence for whoever looks into it.
func (d *daemon) checkChain(ctx context.Context, st *store.Store) (*apitype.AuditStatus, error) {
	cs, err := st.VerifyAuditChain(ctx)
	if err != nil {
		return nil, fmt.Errorf("verifying the audit chain: %w", err)
	}
	s := &apitype.AuditStatus{
		State: string(cs.State), Records: cs.Records, HeadSeq: cs.HeadSeq, HeadHash: cs.HeadHash,
		AnchorSeq: cs.AnchorSeq, AnchorHash: cs.AnchorHash, Problem: cs.Problem, CheckedAt: d.o.now().UTC(),
	}
	switch cs.State {
	case store.ChainEmpty:
		d.log.Info("audit chain is empty: a new installation", "records", cs.Records)
		return s, nil
	case store.ChainIntact:
		if cs.Problem != "" {
			d.log.Warn("audit chain verified, but its head cannot be checked", "records", cs.Records, "problem", cs.Problem)
		} else {
			d.log.Info("audit chain verified", "records", cs.Records, "head_seq", cs.HeadSeq)
		}
		return s, nil
	}
	d.log.Error("audit chain is not intact; omertad starts and keeps the database as found",
		"state", cs.State, "problem", cs.Problem, "records", cs.Records, "head_seq", cs.HeadSeq, "anchor_seq", cs.AnchorSeq)
	if err := st.Audit(ctx, store.AuditEntry{Actor: "omertad", Action: chainProblemAction + string(cs.State), Detail: s}); err != nil {
		return nil, fmt.Errorf("recording the audit chain's state (%s): %w", cs.State, err)
	}
	return s, nil
}
