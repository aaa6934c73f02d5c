-- Fencing: each time a mission's lease passes to another holder (or is taken again after it
-- ran out), its epoch grows; a driver's appends carry the epoch it took, and an append with
-- another one changes nothing (a driver that stalled past its lease cannot write).
ALTER TABLE missions ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
