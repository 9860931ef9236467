-- Schema 2: experiments, and what rolling them back needs.

-- A config the controller knows only by hash: an agent's local `--config`
-- file it ran before a push. Pushing it means "revert to your local config"
-- (ConfigPush.revert_to_local); its content is empty until the same hash is
-- pushed with a body.
ALTER TABLE config_versions ADD COLUMN local INTEGER NOT NULL DEFAULT 0;

-- The experiment a push deploys, promotes or rolls back, if any.
ALTER TABLE pushes ADD COLUMN experiment_id TEXT;

CREATE TABLE experiments (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    spec          TEXT NOT NULL,                 -- JSON of the validated definition
    state         TEXT NOT NULL CHECK (state IN ('draft', 'pending', 'deploying', 'running',
                      'analyzing', 'succeeded', 'failed', 'promoted', 'rolled_back', 'cancelled')),
    reason        TEXT NOT NULL DEFAULT '',      -- why it entered its state
    author        TEXT NOT NULL,
    config        TEXT NOT NULL,                 -- the composed agent config it deploys
    config_hash   TEXT NOT NULL,
    promotions    TEXT NOT NULL DEFAULT '{}',    -- JSON: variant -> the config promoting it pushes
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    start_at      INTEGER,                       -- scheduled start (pending until then)
    deploy_push   TEXT REFERENCES pushes (id),
    deploying_at  INTEGER,
    running_at    INTEGER,                       -- every target applied
    measure_from  INTEGER,                       -- running_at + warm-up (unix ms)
    ends_at       INTEGER,                       -- measure_from + duration
    finished_at   INTEGER,                       -- left running/analyzing
    breach        TEXT,                          -- JSON: the guardrail breach found at ingest
    analysis      TEXT,                          -- JSON: the final report
    promoted_push TEXT REFERENCES pushes (id),
    -- The targets' previous configs are to be pushed back: 1 set with the
    -- transition that calls for it, 2 while a restore runs, 0 done. A
    -- restore a crash interrupted is redone at the next start.
    restore_pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX experiments_restoring ON experiments (id) WHERE restore_pending != 0;
CREATE INDEX experiments_active ON experiments (state)
    WHERE state IN ('pending', 'deploying', 'running', 'analyzing');
-- The list, newest first (Store::list_experiments): read in index order up
-- to the limit instead of sorting every experiment with its config.
CREATE INDEX experiments_by_created ON experiments (created_at DESC, id);

-- Every state change, append-only.
CREATE TABLE experiment_transitions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    from_state    TEXT NOT NULL,
    to_state      TEXT NOT NULL,
    actor         TEXT NOT NULL,
    reason        TEXT NOT NULL
);
CREATE INDEX experiment_transitions_by_experiment ON experiment_transitions (experiment_id);

-- The agents an experiment deployed to, and the config each ran before:
-- what a rollback restores.
CREATE TABLE experiment_targets (
    experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    agent_id      TEXT NOT NULL REFERENCES agents (id),
    previous_hash TEXT NOT NULL,
    PRIMARY KEY (experiment_id, agent_id)
);
-- Which experiment holds an agent, checked for every target before a
-- deploy (Store::agents_in_experiments): by agent, not a scan of every
-- target of every experiment ever run.
CREATE INDEX experiment_targets_by_agent ON experiment_targets (agent_id);

-- One row per experiment, variant, agent and interval after the warm-up.
CREATE TABLE experiment_measurements (
    experiment_id    TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant          TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    interval_ns      INTEGER NOT NULL,           -- the scrape's time
    series           INTEGER NOT NULL,
    datapoints       INTEGER NOT NULL,
    bytes            INTEGER NOT NULL,           -- raw OTLP bytes
    bytes_gzip       INTEGER NOT NULL,
    cpu_seconds      REAL NOT NULL,              -- this variant's processing CPU
    critical_total   INTEGER NOT NULL,
    critical_visible INTEGER NOT NULL,
    topn_fidelity    REAL,                       -- NULL for the baseline
    received_at      INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, variant, agent_id, interval_ns)
) WITHOUT ROWID;
