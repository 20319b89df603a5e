-- crabpot.db, version 6: out-of-process channel adapters (DESIGN §8, docs/adapter-protocol.md).
-- One row per adapter made by `crabpot adapters add NAME`: the channel type it serves (one
-- adapter per type) and the SHA-256 of its token (the token itself is shown once and never
-- stored). `last_seen_at` is when it last said hello or went away (unix ms). Never edit a
-- released migration: add the next number instead.
CREATE TABLE adapters (
    name         TEXT PRIMARY KEY NOT NULL,
    channel_type TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER
);
