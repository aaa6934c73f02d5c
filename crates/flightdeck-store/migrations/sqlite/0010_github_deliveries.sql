-- GitHub webhook deliveries: each kept from the moment it is received (before GitHub is
-- answered) until it is handled, so that a crash or a failed handling loses none; and kept
-- after, body dropped, so that a redelivery (same `X-GitHub-Delivery` id) is recognised and
-- not handled twice. `body` is the raw request body, exactly as received (its signature was
-- checked over these bytes), emptied once handled. `due_ms` is when the next try may start
-- (the receipt, then what a retry set); `attempts` counts the tries that asked to be tried
-- again, `last_error` says why the last one did. `handled_ms` is NULL while pending;
-- `outcome` says what handling did (or why it did nothing).
CREATE TABLE IF NOT EXISTS github_deliveries (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER NOT NULL,
    handled_ms INTEGER,
    outcome TEXT,
    last_error TEXT
);

-- The pending ones alone (handled ones are kept for good, for deduplication): what a handler
-- looks for, by when they are due.
CREATE INDEX IF NOT EXISTS github_deliveries_pending ON github_deliveries (due_ms)
    WHERE handled_ms IS NULL;
