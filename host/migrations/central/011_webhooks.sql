-- crabpot.db, version 11: webhooks (`crabpot webhooks create`). An inbound hook is served at
-- /hooks/webhooks/<name> and starts turns of its agent group in the chat webhook/<name>; an
-- outbound hook is a URL crabpot POSTs agents' messages to, reached through the chat
-- webhook/<name>. The secret signs (outbound) or verifies (inbound) HMAC-SHA256 signatures,
-- so it is kept as it is, not hashed: this database is host-only (mode 0600). Never edit a
-- released migration: add the next number instead.
CREATE TABLE webhooks (
    name           TEXT PRIMARY KEY NOT NULL,
    direction      TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    agent_group_id TEXT REFERENCES agent_groups (id) ON DELETE CASCADE,
    url            TEXT,
    secret         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    CHECK ((direction = 'inbound') = (agent_group_id IS NOT NULL)),
    CHECK ((direction = 'outbound') = (url IS NOT NULL))
) WITHOUT ROWID;
