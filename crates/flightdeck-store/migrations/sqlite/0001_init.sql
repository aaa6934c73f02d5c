-- flightdeck event store, SQLite flavour. Times are integer milliseconds since the epoch.

CREATE TABLE missions (
    id               TEXT    PRIMARY KEY NOT NULL,
    status           TEXT    NOT NULL,
    template         TEXT    NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    head_hash        TEXT    NOT NULL,
    summary          TEXT    NOT NULL,   -- JSON projection of the timeline (the fold's summary)
    lease_owner      TEXT,
    lease_expires_ms INTEGER
);
CREATE INDEX missions_by_creation ON missions (created_at_ms DESC, id DESC);

CREATE TABLE events (
    mission   TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL,
    type      TEXT    NOT NULL,
    data      TEXT    NOT NULL,          -- JCS (RFC 8785) text of the event's data
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (mission, seq)
) WITHOUT ROWID;

-- A timeline is append-only: the database itself refuses edits and deletions.
CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
