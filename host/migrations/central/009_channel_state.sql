-- crabpot.db, version 9: what the platform adapters keep across restarts (Telegram's update
-- offset, Discord's gateway session to resume, ...), and the platform event ids they have
-- already taken in, so a platform's retry of an event is stored once. Never edit a released
-- migration: add the next number instead.
CREATE TABLE channel_state (
    channel_type TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (channel_type, key)
) WITHOUT ROWID;

CREATE TABLE channel_seen_events (
    channel_type TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    seen_at      INTEGER NOT NULL,
    PRIMARY KEY (channel_type, event_id)
) WITHOUT ROWID;
CREATE INDEX channel_seen_events_age ON channel_seen_events (seen_at);
