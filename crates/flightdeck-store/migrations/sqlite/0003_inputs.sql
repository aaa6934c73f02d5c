-- A mission's inbox: what other processes ask of a mission (an approval vote, a budget raise,
-- a cancel) waits here as an input until the mission's driver takes it in. The driver marks
-- it applied in the transaction that appends the events it led to (`applied_seq`: the last
-- of them), or refuses it with a reason. The store never interprets `kind` or `payload`.
CREATE TABLE inputs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    mission       TEXT    NOT NULL REFERENCES missions (id) DEFERRABLE INITIALLY DEFERRED,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL,   -- JSON
    posted_at_ms  INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'applied', 'refused')),
    applied_seq   INTEGER,
    reason        TEXT,
    decided_at_ms INTEGER,
    CHECK ((state = 'applied') = (applied_seq IS NOT NULL)),
    CHECK ((state = 'refused') = (reason IS NOT NULL)),
    CHECK ((state = 'pending') = (decided_at_ms IS NULL))
);
CREATE INDEX inputs_by_mission_state ON inputs (mission, state);
-- What the scheduler scans: only pending inputs, whatever the size of the history.
CREATE INDEX inputs_pending ON inputs (id, mission) WHERE state = 'pending';

-- An input is decided once: a decided input never changes, nor does what was posted.
CREATE TRIGGER inputs_are_decided_once BEFORE UPDATE ON inputs
WHEN OLD.state <> 'pending' OR NEW.id IS NOT OLD.id OR NEW.mission IS NOT OLD.mission
  OR NEW.kind IS NOT OLD.kind OR NEW.payload IS NOT OLD.payload
  OR NEW.posted_at_ms IS NOT OLD.posted_at_ms
BEGIN SELECT RAISE(ABORT, 'an input is decided once'); END;
