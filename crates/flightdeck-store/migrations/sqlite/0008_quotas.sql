-- Team quotas: what each team's missions hold (reserved, for model calls in flight) and
-- spent, per dimension and calendar month; and each reservation's holds, settled once to
-- what the call cost. A hold never settled (its call cut off by a crash) stays reserved,
-- so it counts as spent.
CREATE TABLE IF NOT EXISTS quota_usage (
    team TEXT NOT NULL,
    dimension TEXT NOT NULL,
    period TEXT NOT NULL,
    reserved REAL NOT NULL DEFAULT 0,
    spent REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (team, dimension, period)
);

CREATE TABLE IF NOT EXISTS quota_holds (
    reservation TEXT NOT NULL,
    team TEXT NOT NULL,
    dimension TEXT NOT NULL,
    period TEXT NOT NULL,
    mission TEXT NOT NULL,
    amount REAL NOT NULL,
    reserved_at_ms INTEGER NOT NULL,
    -- NULL while held; what the call cost once settled.
    spent REAL,
    settled_at_ms INTEGER,
    PRIMARY KEY (reservation, team, dimension)
);
