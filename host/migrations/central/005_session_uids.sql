-- crabpot.db, version 5: one container uid per session (DESIGN §3, §5). A session is given the
-- lowest free uid of the configured range when its folder is created, and keeps it for as long
-- as the session exists (its files in out/ and work/ belong to that uid). The row goes with
-- the session, so a reset or a deleted group frees the uid. Never edit a released migration:
-- add the next number instead.
CREATE TABLE session_uids (
    session_id TEXT PRIMARY KEY NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL UNIQUE CHECK (uid > 0),
    created_at INTEGER NOT NULL
);
