-- 0001: the append-only, hash-chained audit log.
-- Every mutating action of every later feature appends a row here.
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,           -- 1, 2, 3 ... no gaps
    at        TEXT    NOT NULL,              -- RFC 3339, UTC, nanoseconds
    actor     TEXT    NOT NULL,              -- "omertad", "firstboot", "uid:1000", a user name
    action    TEXT    NOT NULL,              -- dotted verb: "daemon.start", "probe.drift"
    target    TEXT    NOT NULL DEFAULT '',
    detail    TEXT    NOT NULL DEFAULT '{}', -- JSON object
    prev_hash TEXT    NOT NULL,              -- hash of seq-1, 64 zeros for seq 1
    hash      TEXT    NOT NULL UNIQUE        -- see store.auditHash
) STRICT;

-- The database refuses edits; VerifyAudit catches edits made around SQLite.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
