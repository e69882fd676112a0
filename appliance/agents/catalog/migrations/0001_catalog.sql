-- catalog 0001: the entries operators imported. The entries shipped in the
-- image are read from its catalog directory at every start and never stored
-- here, so that an upgraded image's catalog replaces the old one.
CREATE TABLE catalog_entries (
    id          TEXT    PRIMARY KEY,          -- metadata.id, a DNS label
    manifest    TEXT    NOT NULL,             -- the normalised manifest as JSON, checked again when read
    format      TEXT    NOT NULL,             -- the format it was read from (catalog.Format)
    file        TEXT    NOT NULL,             -- the file name given at import
    source      TEXT    NOT NULL DEFAULT '',  -- its place in that file ("agents[2]")
    notes       TEXT    NOT NULL DEFAULT '[]',-- JSON list of the fields dropped or approximated
    imported_by TEXT    NOT NULL,             -- the actor ("uid:0")
    imported_at TEXT    NOT NULL
) STRICT;
