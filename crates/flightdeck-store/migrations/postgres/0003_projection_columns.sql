-- Typed columns beside the summary: what claiming work (`claim_runnable`) and listings filter
-- on, so neither parses summaries. `ready`: a worker can drive the mission on without anyone's
-- input; `next_deadline_ms`: when something fires by itself (an approval's expiry).
ALTER TABLE missions ADD COLUMN requested_by TEXT;
ALTER TABLE missions ADD COLUMN team TEXT;
ALTER TABLE missions ADD COLUMN ready BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE missions ADD COLUMN waiting_for TEXT;
ALTER TABLE missions ADD COLUMN next_deadline_ms BIGINT;
ALTER TABLE missions ADD COLUMN cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0;

-- Missions written before these columns (`store copy` writes them itself).
UPDATE missions SET
  requested_by = summary::jsonb ->> 'requested_by',
  cost_usd = coalesce((summary::jsonb #>> '{cost,total_usd}')::double precision, 0),
  ready = status IN ('queued', 'provisioning', 'running'),
  waiting_for = CASE status WHEN 'awaiting_approval' THEN 'approval'
                            WHEN 'blocked' THEN 'resume' END,
  next_deadline_ms = (
    SELECT min((extract(epoch FROM (p ->> 'expires_at')::timestamptz) * 1000)::bigint)
    FROM jsonb_array_elements(coalesce(summary::jsonb -> 'pending_approvals', '[]'::jsonb)) AS p
    WHERE p ->> 'expires_at' IS NOT NULL);

-- A running mission whose last event is its interruption was stopped by a signal (ctrl-c):
-- it waits for `resume`. One parked for approvals with none pending has them all granted.
UPDATE missions SET ready = false, waiting_for = 'resume'
WHERE ready AND EXISTS (SELECT 1 FROM events AS e
                        WHERE e.mission = missions.id AND e.seq = missions.last_seq
                          AND e.type = 'mission.interrupted');
UPDATE missions SET ready = true, waiting_for = NULL
WHERE status = 'awaiting_approval'
  AND jsonb_array_length(coalesce(summary::jsonb -> 'pending_approvals', '[]'::jsonb)) = 0;

-- What a claim reads: the ready missions, the ones with a deadline, and (in `inputs`) the
-- ones with a pending input; each a small partial index, so a claim costs the same with a
-- hundred thousand finished missions. And the live leases a worker looks at.
CREATE INDEX missions_ready ON missions (updated_at_ms, id) WHERE ready;
CREATE INDEX missions_deadline ON missions (next_deadline_ms) WHERE next_deadline_ms IS NOT NULL;
CREATE INDEX missions_leased ON missions (lease_expires_ms) WHERE lease_owner IS NOT NULL;
CREATE INDEX missions_by_requester ON missions (requested_by, created_at_ms DESC, id DESC);

-- The change feed's global position over all missions: one row per append. Positions are
-- drawn under a transaction-level advisory lock held until commit, so they are in commit
-- order and a reader that has seen position N never later finds a smaller one appear.
CREATE TABLE feed (
    position BIGSERIAL PRIMARY KEY,
    mission  TEXT    NOT NULL,
    last_seq BIGINT  NOT NULL,
    status   TEXT    NOT NULL,
    at_ms    BIGINT  NOT NULL
);
INSERT INTO feed (mission, last_seq, status, at_ms)
  SELECT id, last_seq, status, updated_at_ms FROM missions ORDER BY updated_at_ms, id;
