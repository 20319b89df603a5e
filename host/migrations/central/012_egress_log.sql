-- Every egress attempt a container made through its proxy socket, allowed or refused
-- (host/src/db/central/egress_log.rs). Kept to the newest rows by the writer; no foreign keys,
-- so the log outlives the sessions and groups it names.
CREATE TABLE egress_log (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    agent_group_id TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    -- connect | http | fetch | search
    kind TEXT NOT NULL,
    -- allowed | not_listed | denied_rule | internal_address | lookup_failed | connect_failed
    outcome TEXT NOT NULL,
    -- The rule that allowed it, or the reason it was refused.
    detail TEXT NOT NULL DEFAULT '',
    bytes_up INTEGER NOT NULL DEFAULT 0,
    bytes_down INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    at_ms INTEGER NOT NULL
);
CREATE INDEX egress_log_session ON egress_log (session_id, id);
CREATE INDEX egress_log_group ON egress_log (agent_group_id, id);
