-- probe 0001: hardware probes (appliance/probe) and the drift found between them.
-- A probe row is a whole probe.Result as JSON; the first-boot probe is the
-- baseline that every later probe is compared with.
CREATE TABLE probe (
    id             INTEGER PRIMARY KEY,
    at             TEXT    NOT NULL,                 -- RFC 3339, UTC: when it was probed
    baseline       INTEGER NOT NULL DEFAULT 0 CHECK (baseline IN (0, 1)),
    schema_version TEXT    NOT NULL,                 -- probe.SchemaVersion of result
    result         TEXT    NOT NULL                  -- JSON probe.Result
) STRICT;

-- At most one baseline: drift is measured against one reference.
CREATE UNIQUE INDEX probe_one_baseline ON probe (baseline) WHERE baseline = 1;

-- One row per change first seen in a probe (not repeated while it lasts).
CREATE TABLE probe_drift (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    probe_id    INTEGER NOT NULL REFERENCES probe (id),
    baseline_id INTEGER NOT NULL REFERENCES probe (id),
    kind        TEXT    NOT NULL,               -- "gpu.lost", "gpu.driver_changed", "memory.shrank", "nic.gone", ...
    subject     TEXT    NOT NULL DEFAULT '',    -- what changed: "GPU 3 (GPU-...)", "eth0"
    before      TEXT    NOT NULL DEFAULT '',
    after       TEXT    NOT NULL DEFAULT '',
    message     TEXT    NOT NULL                -- one line for a person
) STRICT;

CREATE INDEX probe_drift_probe ON probe_drift (probe_id);
