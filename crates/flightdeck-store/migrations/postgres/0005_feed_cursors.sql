-- Feed cursors: where each named reader of the global feed (the server's Slack notifier)
-- got to, saved so that a restarted reader resumes there instead of rereading the feed from
-- position 0. A cursor only moves forward: a save below the stored position is ignored.
-- `saved_at_ms` is NULL until a position is first saved (a row may exist for its lease alone).
-- The lease: only `holder` reads the feed under the name, until `held_until_ms` (the
-- database's clock), so that processes sharing the store do not each read it.
CREATE TABLE IF NOT EXISTS feed_cursors (
    reader TEXT PRIMARY KEY,
    position BIGINT NOT NULL DEFAULT 0,
    saved_at_ms BIGINT,
    holder TEXT,
    held_until_ms BIGINT
);
