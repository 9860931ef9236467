-- Schema 1 of the controller store. Times are unix milliseconds unless named
-- otherwise; JSON columns hold small documents the API returns as they are.

-- Every agent that ever completed a Hello, online or not.
CREATE TABLE agents (
    id                    TEXT PRIMARY KEY,          -- Hello.instance_id
    host_name             TEXT NOT NULL,
    version               TEXT NOT NULL,
    capabilities          TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    status                TEXT NOT NULL CHECK (status IN ('online', 'offline')),
    effective_hash        TEXT NOT NULL DEFAULT '',  -- the config it runs (SHA-256 hex)
    config_state          TEXT NOT NULL DEFAULT 'unspecified',
    config_error          TEXT NOT NULL DEFAULT '',
    applied_at_unix_s     INTEGER,                   -- as the agent reported it
    desired_push_id       TEXT REFERENCES pushes (id), -- latest push that targets it
    first_seen            INTEGER NOT NULL,
    last_seen             INTEGER NOT NULL,
    connected_at          INTEGER,
    cpu_seconds_total     REAL,                      -- from the last heartbeat
    resident_memory_bytes INTEGER
);

-- Labels in their own table so a selector is an indexed query.
CREATE TABLE agent_labels (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (agent_id, key)
);
CREATE INDEX agent_labels_by_pair ON agent_labels (key, value);

-- Every config ever pushed, once per content (deduplicated by hash).
CREATE TABLE config_versions (
    hash       TEXT PRIMARY KEY,
    content    TEXT NOT NULL,
    author     TEXT NOT NULL,                        -- who pushed it first
    created_at INTEGER NOT NULL
);

CREATE TABLE pushes (
    id          TEXT PRIMARY KEY,
    selector    TEXT NOT NULL,                       -- JSON, as requested
    config_hash TEXT NOT NULL REFERENCES config_versions (hash),
    template    TEXT,                                -- template name, when pushed from one
    author      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    deadline    INTEGER NOT NULL                     -- open targets time out after this
);
CREATE INDEX pushes_by_time ON pushes (created_at);

-- One row per agent a push was meant for: the rollout status.
CREATE TABLE push_targets (
    push_id       TEXT NOT NULL REFERENCES pushes (id),
    agent_id      TEXT NOT NULL REFERENCES agents (id),
    state         TEXT NOT NULL CHECK (state IN
                      ('pending', 'applying', 'applied', 'failed', 'timeout', 'superseded')),
    error         TEXT NOT NULL DEFAULT '',
    reported_hash TEXT NOT NULL DEFAULT '',          -- the hash the agent reported
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (push_id, agent_id)
);
CREATE INDEX push_targets_by_agent ON push_targets (agent_id);
-- Open targets only: superseding (by agent) and timing out (by push) stay
-- as fast with a long history as with none.
CREATE INDEX push_targets_open ON push_targets (push_id) WHERE state IN ('pending', 'applying');
CREATE INDEX push_targets_open_by_agent ON push_targets (agent_id) WHERE state IN ('pending', 'applying');

-- Every push and every outcome, append-only.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,                          -- the push author, or agent:<id>, or controller
    action   TEXT NOT NULL,
    push_id  TEXT,
    agent_id TEXT,
    detail   TEXT NOT NULL DEFAULT '{}'              -- JSON
);
CREATE INDEX audit_log_by_push ON audit_log (push_id);

-- The latest IntervalStats of each agent (series are for a later schema).
CREATE TABLE agent_stats_latest (
    agent_id    TEXT PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    received_at INTEGER NOT NULL,
    stats       TEXT NOT NULL                        -- JSON
);
