-- Lists of a mission's projection that grow with the mission (its steps), kept item by item:
-- an append upserts only the items it changed, so its cost does not grow with the mission.
-- Reading a mission puts each list back into its summary, under the list's name, in
-- position order.
CREATE TABLE projection_items (
    mission  TEXT    NOT NULL REFERENCES missions (id) DEFERRABLE INITIALLY DEFERRED,
    list     TEXT    NOT NULL,
    position INTEGER NOT NULL,
    value    TEXT    NOT NULL,   -- JSON
    PRIMARY KEY (mission, list, position)
) WITHOUT ROWID;
