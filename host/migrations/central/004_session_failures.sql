-- crabpot.db, version 4: a session whose outbound.db is hostile or broken is marked failed
-- (DESIGN §3, "the host's edge"), once, with the reason. A failed session gets no container
-- until an admin resets it (`crabpot sessions reset <id>`), which deletes the row and so the
-- failure. Never edit a released migration: add the next number instead.
ALTER TABLE sessions ADD COLUMN failed_reason TEXT;
ALTER TABLE sessions ADD COLUMN failed_at INTEGER;          -- unix milliseconds
