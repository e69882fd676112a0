-- auth 0001: the console's users, their sessions, reset links and API tokens.
-- Secrets are never stored: passwords as argon2id PHC strings, session IDs,
-- reset tokens and API tokens as SHA-256 hashes (each holds at least 128
-- random bits, so a fast hash is enough).
CREATE TABLE auth_users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,   -- lower case, see auth.ValidateUsername
    role                TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    password_hash       TEXT    NOT NULL DEFAULT '', -- '' until a reset link is used
    disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at          TEXT    NOT NULL,          -- RFC 3339, UTC
    created_by          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    password_changed_at TEXT,                      -- NULL while no password is set
    last_login_at       TEXT
) STRICT;

-- Setup happens once per database: this row says it did, even after the
-- first admin is disabled, so the setup page never comes back.
CREATE TABLE auth_setup (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    done_at  TEXT    NOT NULL,
    admin_id INTEGER NOT NULL REFERENCES auth_users (id)
) STRICT;

CREATE TABLE auth_sessions (
    id_hash      TEXT    PRIMARY KEY,             -- hex SHA-256 of the session ID
    user_id      INTEGER NOT NULL REFERENCES auth_users (id) ON DELETE CASCADE,
    -- The CSRF synchronizer token is kept as is: the console renders it into
    -- every page of the session, and without the session ID it is worthless.
    csrf_token   TEXT    NOT NULL,
    address      TEXT    NOT NULL DEFAULT '',
    created_at   TEXT    NOT NULL,
    last_seen_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL                 -- the absolute timeout
) STRICT;

CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- One outstanding reset link per user; using it deletes it.
CREATE TABLE auth_resets (
    user_id    INTEGER PRIMARY KEY REFERENCES auth_users (id) ON DELETE CASCADE,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    expires_at TEXT    NOT NULL
) STRICT;

CREATE TABLE auth_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    secret_hash  TEXT    NOT NULL UNIQUE,          -- hex SHA-256 of the whole token
    created_by   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    expires_at   TEXT,                             -- NULL: does not expire
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;
