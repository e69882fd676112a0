-- agents 0002: what admission (appliance/policy) needs kept beside an
-- agent's spec, and the agents that a policy change made non-compliant.
--
-- image_signer is the minisign key id that verified the generation's image
-- when it was admitted ('' when none did): the deployed agents' requests
-- (policy's Options.Running) must say what their admission judged, or a
-- policy requiring signed images would find every running agent unsigned.
ALTER TABLE agent_specs ADD COLUMN image_signer TEXT NOT NULL DEFAULT '';

-- One row per deployed agent that fails the policies now in force: set when
-- a policy or tenant change makes it fail (or omertad finds it failing),
-- removed when it passes again (an admitted patch, a later change). The
-- agent keeps running: the flag is for the operator to act on.
CREATE TABLE agent_policy_flags (
    agent_id   TEXT PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    rule       TEXT NOT NULL,  -- the rule that refuses it ("policy:tenant/acme@v4 max.memory")
    reason     TEXT NOT NULL,  -- why, with the numbers
    flagged_at TEXT NOT NULL
) STRICT;
