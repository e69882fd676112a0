-- policy 0001: policies with their whole history, tenants and their quotas,
-- which tenants each restricted user may see, and admission decisions.
--
-- A policy row points at its current version; every change (create,
-- update, rollback, delete) adds a version and none is ever rewritten, so
-- the history is the table. A deletion is a version without a spec.
CREATE TABLE policies (
    id           INTEGER PRIMARY KEY,
    subject_kind TEXT    NOT NULL CHECK (subject_kind IN ('agent', 'category', 'tenant')),
    subject_name TEXT    NOT NULL,              -- agent id, tenant name, or category lower-cased
    version      INTEGER NOT NULL CHECK (version >= 1),  -- the current version
    deleted      INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    UNIQUE (subject_kind, subject_name)
) STRICT;

CREATE TABLE policy_versions (
    policy_id    INTEGER NOT NULL REFERENCES policies (id),
    version      INTEGER NOT NULL CHECK (version >= 1),
    action       TEXT    NOT NULL CHECK (action IN ('create', 'update', 'rollback', 'delete')),
    from_version INTEGER,                       -- a rollback: the version copied
    description  TEXT    NOT NULL DEFAULT '',
    spec         TEXT,                          -- normalised JSON; NULL for a deletion
    actor        TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    PRIMARY KEY (policy_id, version),
    CHECK ((action = 'delete') = (spec IS NULL))
) STRICT;

CREATE TABLE policy_tenants (
    name        TEXT PRIMARY KEY,               -- a DNS label
    description TEXT NOT NULL DEFAULT '',
    quotas      TEXT NOT NULL DEFAULT '{}',     -- Quotas as JSON
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;

-- Every agent belongs to a tenant; the one that names none to this one.
INSERT INTO policy_tenants (name, description, created_at, updated_at, updated_by)
VALUES ('default', 'the tenant of every agent that names none',
        strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'omertad');

-- A user with a row here sees only the tenants granted below (none at
-- all when there are none); a user without one is not restricted.
CREATE TABLE policy_scoped_users (
    username   TEXT PRIMARY KEY,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE policy_grants (
    username TEXT NOT NULL REFERENCES policy_scoped_users (username) ON DELETE CASCADE,
    tenant   TEXT NOT NULL REFERENCES policy_tenants (name) ON DELETE CASCADE,
    PRIMARY KEY (username, tenant)
) STRICT;

-- The latest admission decisions (the Service keeps a bounded number), so
-- that a denial can be shown with its rule and reason.
CREATE TABLE policy_decisions (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    op       TEXT    NOT NULL CHECK (op IN ('deploy', 'patch', 'check')),
    agent_id TEXT    NOT NULL,
    tenant   TEXT    NOT NULL,
    allow    INTEGER NOT NULL CHECK (allow IN (0, 1)),
    rule     TEXT    NOT NULL DEFAULT '',
    reason   TEXT    NOT NULL DEFAULT '',
    detail   TEXT    NOT NULL                   -- JSON: denials, warnings, the layers applied, the request
) STRICT;

CREATE INDEX policy_decisions_agent ON policy_decisions (agent_id, id);
CREATE INDEX policy_decisions_tenant ON policy_decisions (tenant, id);
