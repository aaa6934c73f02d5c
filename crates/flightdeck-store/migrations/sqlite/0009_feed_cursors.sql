-- Feed cursors: where each named reader of the global feed (the server's Slack notifier)
-- got to, saved so that a restarted reader resumes there instead of rereading the feed from
-- position 0. A cursor only moves forward: a save below the stored position is ignored.
CREATE TABLE IF NOT EXISTS feed_cursors (
    reader TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    saved_at_ms INTEGER NOT NULL
);
