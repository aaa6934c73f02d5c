-- flightdeck's store on PostgreSQL: the same tables as the SQLite store's migrations 1-5, in
-- one step. Timelines are append-only (triggers), events keep their data as the exact JCS
-- text that was hashed, and artifacts live in the database (no process needs another's disk).

CREATE TABLE flightdeck_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO flightdeck_meta (key, value) VALUES ('application', 'flightdeck');

CREATE TABLE missions (
    id               TEXT    PRIMARY KEY,
    status           TEXT    NOT NULL,
    template         TEXT    NOT NULL,
    created_at_ms    BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL,
    last_seq         BIGINT  NOT NULL,
    head_hash        TEXT    NOT NULL,
    summary          TEXT    NOT NULL,   -- JSON projection of the timeline
    lease_owner      TEXT,
    lease_expires_ms BIGINT
);
CREATE INDEX missions_by_creation ON missions (created_at_ms DESC, id DESC);

CREATE TABLE events (
    mission   TEXT    NOT NULL,
    seq       BIGINT  NOT NULL,
    at_ms     BIGINT  NOT NULL,
    type      TEXT    NOT NULL,
    data      TEXT    NOT NULL,          -- JCS (RFC 8785) text of the event's data
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (mission, seq)
);

CREATE FUNCTION flightdeck_refuse() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$$;

CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION flightdeck_refuse('events are append-only');

CREATE TABLE artifacts (
    digest TEXT  PRIMARY KEY,            -- "sha256:<64 hex>" of bytes
    bytes  BYTEA NOT NULL
);
CREATE TRIGGER artifacts_are_immutable BEFORE UPDATE ON artifacts
FOR EACH ROW EXECUTE FUNCTION flightdeck_refuse('artifacts are immutable');

CREATE TABLE inputs (
    id            BIGSERIAL PRIMARY KEY,
    mission       TEXT    NOT NULL REFERENCES missions (id) DEFERRABLE INITIALLY DEFERRED,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,      -- JSON
    posted_at_ms  BIGINT  NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'applied', 'refused')),
    applied_seq   BIGINT,
    reason        TEXT,
    decided_at_ms BIGINT,
    CHECK ((state = 'applied') = (applied_seq IS NOT NULL)),
    CHECK ((state = 'refused') = (reason IS NOT NULL)),
    CHECK ((state = 'pending') = (decided_at_ms IS NULL))
);
CREATE INDEX inputs_by_mission_state ON inputs (mission, state);
CREATE INDEX inputs_pending ON inputs (id, mission) WHERE state = 'pending';

CREATE FUNCTION inputs_decided_once() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'pending' OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.mission IS DISTINCT FROM OLD.mission OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.payload IS DISTINCT FROM OLD.payload
       OR NEW.posted_at_ms IS DISTINCT FROM OLD.posted_at_ms THEN
        RAISE EXCEPTION 'an input is decided once';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER inputs_are_decided_once BEFORE UPDATE ON inputs
FOR EACH ROW EXECUTE FUNCTION inputs_decided_once();

CREATE TABLE projection_items (
    mission  TEXT    NOT NULL REFERENCES missions (id) DEFERRABLE INITIALLY DEFERRED,
    list     TEXT    NOT NULL,
    position BIGINT  NOT NULL,
    value    TEXT    NOT NULL,           -- JSON
    PRIMARY KEY (mission, list, position)
);

CREATE TABLE tokens (
    id            TEXT    PRIMARY KEY,
    hash          TEXT    NOT NULL UNIQUE,
    owner         TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    created_at_ms BIGINT  NOT NULL,
    created_by    TEXT    NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    last_used_ms  BIGINT
);

CREATE FUNCTION tokens_keep_what_they_are() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.hash IS DISTINCT FROM OLD.hash
       OR NEW.owner IS DISTINCT FROM OLD.owner OR NEW.role IS DISTINCT FROM OLD.role
       OR NEW.created_at_ms IS DISTINCT FROM OLD.created_at_ms
       OR NEW.created_by IS DISTINCT FROM OLD.created_by
       OR NEW.expires_at_ms IS DISTINCT FROM OLD.expires_at_ms
       OR (OLD.revoked_at_ms IS NOT NULL AND NEW.revoked_at_ms IS DISTINCT FROM OLD.revoked_at_ms) THEN
        RAISE EXCEPTION 'a token is only revoked and used';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tokens_keep_what_they_are BEFORE UPDATE ON tokens
FOR EACH ROW EXECUTE FUNCTION tokens_keep_what_they_are();
