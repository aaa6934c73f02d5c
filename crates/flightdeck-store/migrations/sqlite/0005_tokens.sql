-- API tokens (`flightdeck token`, `flightdeck serve`): a token is shown once when it is made;
-- only its SHA-256 is kept. A token acts as its owner (a person's handle) with its role.
CREATE TABLE tokens (
    id            TEXT    PRIMARY KEY,
    hash          TEXT    NOT NULL UNIQUE,
    owner         TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER,
    last_used_ms  INTEGER
);

-- What a token is never changes; it is only revoked (once) and used.
CREATE TRIGGER tokens_keep_what_they_are BEFORE UPDATE ON tokens
WHEN NEW.id IS NOT OLD.id OR NEW.hash IS NOT OLD.hash OR NEW.owner IS NOT OLD.owner
  OR NEW.role IS NOT OLD.role OR NEW.created_at_ms IS NOT OLD.created_at_ms
  OR NEW.created_by IS NOT OLD.created_by OR NEW.expires_at_ms IS NOT OLD.expires_at_ms
  OR (OLD.revoked_at_ms IS NOT NULL AND NEW.revoked_at_ms IS NOT OLD.revoked_at_ms)
BEGIN SELECT RAISE(ABORT, 'a token is only revoked and used'); END;
