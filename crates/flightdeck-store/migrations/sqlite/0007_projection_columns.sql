-- Typed columns beside the summary: what claiming work (`claim_runnable`) and listings filter
-- on, so neither parses summaries. `ready`: a worker can drive the mission on without anyone's
-- input; `next_deadline_ms`: when something fires by itself (an approval's expiry).
ALTER TABLE missions ADD COLUMN requested_by TEXT;
ALTER TABLE missions ADD COLUMN team TEXT;
ALTER TABLE missions ADD COLUMN ready INTEGER NOT NULL DEFAULT 0;
ALTER TABLE missions ADD COLUMN waiting_for TEXT;
ALTER TABLE missions ADD COLUMN next_deadline_ms INTEGER;
ALTER TABLE missions ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;

-- Missions of an earlier release: the columns as their summaries say. A mission that was
-- running when its process died is ready; a parked one waits; its approvals' expiries are
-- its deadlines.
UPDATE missions SET
  requested_by = json_extract(summary, '$.requested_by'),
  cost_usd = coalesce(json_extract(summary, '$.cost.total_usd'), 0),
  ready = CASE WHEN status IN ('queued', 'provisioning', 'running') THEN 1 ELSE 0 END,
  waiting_for = CASE status WHEN 'awaiting_approval' THEN 'approval'
                            WHEN 'blocked' THEN 'resume' END,
  next_deadline_ms = (
    SELECT min(CAST(round((julianday(json_extract(p.value, '$.expires_at')) - 2440587.5)
                          * 86400000) AS INTEGER))
    FROM json_each(missions.summary, '$.pending_approvals') AS p
    WHERE json_extract(p.value, '$.expires_at') IS NOT NULL);

-- A running mission whose last event is its interruption was stopped by a signal (ctrl-c):
-- it waits for `resume`. One parked for approvals with none pending has them all granted.
UPDATE missions SET ready = 0, waiting_for = 'resume'
WHERE ready = 1 AND EXISTS (SELECT 1 FROM events AS e
                            WHERE e.mission = missions.id AND e.seq = missions.last_seq
                              AND e.type = 'mission.interrupted');
UPDATE missions SET ready = 1, waiting_for = NULL
WHERE status = 'awaiting_approval'
  AND coalesce(json_array_length(summary, '$.pending_approvals'), 0) = 0;

-- What a claim reads: the ready missions, the ones with a deadline, and (in `inputs`) the
-- ones with a pending input; each a small partial index, so a claim costs the same with a
-- hundred thousand finished missions. And the live leases a worker looks at.
CREATE INDEX missions_ready ON missions (updated_at_ms, id) WHERE ready = 1;
CREATE INDEX missions_deadline ON missions (next_deadline_ms) WHERE next_deadline_ms IS NOT NULL;
CREATE INDEX missions_leased ON missions (lease_expires_ms) WHERE lease_owner IS NOT NULL;
CREATE INDEX missions_by_requester ON missions (requested_by, created_at_ms DESC, id DESC);

-- The change feed's global position over all missions: one row per append, in commit order
-- (one writer), so a reader tails every mission from a position (`feed(after)`) without
-- polling each. Missions of an earlier release get one row each, at their last event.
CREATE TABLE feed (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    mission  TEXT    NOT NULL,
    last_seq INTEGER NOT NULL,
    status   TEXT    NOT NULL,
    at_ms    INTEGER NOT NULL
);
INSERT INTO feed (mission, last_seq, status, at_ms)
  SELECT id, last_seq, status, updated_at_ms FROM missions ORDER BY updated_at_ms, id;
CREATE TRIGGER feed_is_append_only_update BEFORE UPDATE ON feed
BEGIN SELECT RAISE(ABORT, 'the feed is append-only'); END;
