-- agents 0001: the agents' desired state (what the operator asked for), what
-- the reconciler last observed, their tasks, and the outcome of each deploy
-- and patch behind the console's deploy success rate.
--
-- Write order (see appliance/agents/doc.go): intent here first, then
-- containerd, then the observed state here. Container names derive from the
-- agent's id and generation (<id>-g<generation>), so after a crash the
-- reconciler finds, adopts or removes what containerd holds.
CREATE TABLE agents (
    id              TEXT    PRIMARY KEY,                  -- a DNS label
    tenant          TEXT    NOT NULL DEFAULT 'default',
    desired         TEXT    NOT NULL CHECK (desired IN ('enabled', 'disabled', 'deleted')),
    purge           INTEGER NOT NULL DEFAULT 0 CHECK (purge IN (0, 1)),  -- with desired = deleted: remove data and logs too
    generation      INTEGER NOT NULL CHECK (generation >= 1),           -- the spec to run, in container <id>-g<generation>
    last_generation INTEGER NOT NULL CHECK (last_generation >= generation), -- never reused, so names never collide
    prev_generation INTEGER NOT NULL DEFAULT 0 CHECK (prev_generation >= 0), -- a patch in flight keeps this one until the new one runs
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
) STRICT;

-- One row per generation: a patch adds one, and a failed patch removes its
-- own, which is the whole rollback.
CREATE TABLE agent_specs (
    agent_id   TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    manifest   TEXT    NOT NULL,  -- normalised manifest JSON, spec.config left out
    config     TEXT    NOT NULL,  -- the public configuration (JSON object), secrets split out
    created_at TEXT    NOT NULL,
    PRIMARY KEY (agent_id, generation)
) STRICT;

-- Secret configuration values (format: secret), apart from everything that
-- is ever shown: no read API selects from this table except the one that
-- writes the agent's own configuration file.
CREATE TABLE agent_secrets (
    agent_id   TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    key        TEXT    NOT NULL,  -- JSON pointer into the configuration ("/crm_api_key")
    value      TEXT    NOT NULL,  -- the value as JSON
    PRIMARY KEY (agent_id, generation, key),
    FOREIGN KEY (agent_id, generation) REFERENCES agent_specs (agent_id, generation) ON DELETE CASCADE
) STRICT;

CREATE TABLE agent_status (
    agent_id         TEXT    PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    state            TEXT    NOT NULL,
    reason           TEXT    NOT NULL DEFAULT '',  -- the last error, one line
    restarts         INTEGER NOT NULL DEFAULT 0,   -- restarts made by the restart policy
    oom_kills        INTEGER NOT NULL DEFAULT 0,
    task_oom         INTEGER NOT NULL DEFAULT 0,   -- OOM kills already counted from the current container task
    last_exit_code   INTEGER,                      -- NULL: never exited
    last_exit_at     TEXT,                         -- the runtime's exit time of the last exit handled
    failures         TEXT    NOT NULL DEFAULT '[]',-- JSON list of failure times inside the crash-loop window
    next_start_at    TEXT,                         -- backoff: no restart before this
    crash_loop_since TEXT,                         -- in the crash-loop state since; NULL: not
    pending_op       TEXT    NOT NULL DEFAULT '' CHECK (pending_op IN ('', 'deploy', 'patch')),
    pending_since    TEXT,                         -- when pending_op began (its deploy_events duration)
    updated_at       TEXT    NOT NULL
) STRICT;

CREATE TABLE tasks (
    id              TEXT    PRIMARY KEY,
    agent_id        TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    idempotency_key TEXT,                          -- NULL: none; unique per agent otherwise
    input_sha256    TEXT    NOT NULL,              -- tells a replay from a different task under the same key
    state           TEXT    NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED', 'TIMED_OUT')),
    actor           TEXT    NOT NULL,
    input           BLOB    NOT NULL,
    output          BLOB,                          -- stdout, at most the manifest's spec.tasks.maxOutput
    truncated       INTEGER NOT NULL DEFAULT 0 CHECK (truncated IN (0, 1)),
    exit_code       INTEGER,
    error           TEXT    NOT NULL DEFAULT '',
    timeout_ms      INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    started_at      TEXT,
    finished_at     TEXT
) STRICT;

CREATE UNIQUE INDEX tasks_idempotency ON tasks (agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_agent ON tasks (agent_id, created_at);

-- One row per deploy or patch once its outcome is known: the console shows
-- the success rate over the last 7 days.
CREATE TABLE deploy_events (
    id          INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    agent_id    TEXT    NOT NULL,  -- no foreign key: the KPI outlives deleted agents
    op          TEXT    NOT NULL CHECK (op IN ('deploy', 'patch')),
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    duration_ms INTEGER NOT NULL,
    error       TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX deploy_events_at ON deploy_events (at);
