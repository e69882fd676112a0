-- 0003: first boot's progress, one row per step, for the web console.
-- The journal on disk (/var/lib/omerta/firstboot/journal.json) is what a
-- resumed first boot trusts; this table mirrors it at every step boundary.
CREATE TABLE firstboot_steps (
    name        TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL,               -- 1..n, the order steps run in
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'done', 'skipped', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at  TEXT,                           -- RFC 3339, UTC; NULL until first started
    finished_at TEXT,                           -- NULL while pending or running
    error       TEXT    NOT NULL DEFAULT '',    -- why it failed, or why it was skipped
    updated_at  TEXT    NOT NULL
) STRICT;
