-- inbound.db, version 2: delivery bookkeeping that survives a host restart (DESIGN §3.1).

-- One row: how far the host has handled the container's rows. Both values only move forward.
CREATE TABLE delivery_cursor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    after_seq  INTEGER NOT NULL,    -- every outbound row with seq <= this is handled for good
    high_water INTEGER NOT NULL,    -- the largest outbound seq the host has handled or parked
    updated_at INTEGER NOT NULL
);

-- Outbound rows the host has read but not finished: their time has not come (deliver_after),
-- they wait for a retry, or for a recipient to connect. A row at or below the high-water mark
-- that is neither here nor in `delivered` was slipped in behind the host's back: refused.
CREATE TABLE delivery_waiting (
    message_out_id TEXT PRIMARY KEY NOT NULL,
    seq            INTEGER NOT NULL,
    reason         TEXT NOT NULL CHECK (reason IN ('deliver_after', 'retry', 'no_recipient')),
    until          INTEGER,         -- unix milliseconds; NULL = when a recipient connects
    updated_at     INTEGER NOT NULL
);
