-- Small artifacts live in the database, so that one commit makes an event and the artifacts
-- it references durable together (one fsync instead of two per artifact file). Larger ones
-- stay files under artifacts/sha256/. Content-addressed: a row never changes.
CREATE TABLE artifacts (
    digest TEXT PRIMARY KEY NOT NULL,  -- "sha256:<64 hex>" of bytes
    bytes  BLOB NOT NULL
);

CREATE TRIGGER artifacts_are_immutable BEFORE UPDATE ON artifacts
BEGIN SELECT RAISE(ABORT, 'artifacts are immutable'); END;
