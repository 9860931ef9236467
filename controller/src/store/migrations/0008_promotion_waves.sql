-- Schema 8: a promotion rolled out in waves.

-- The new state `promoting`: SQLite cannot change a CHECK constraint, so
-- the table is rebuilt as its documented procedure says (the runner turns
-- foreign keys off around migrations: dropping the old table must not
-- cascade into the rows that reference it).
CREATE TABLE experiments_v8 (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    spec          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('draft', 'pending', 'deploying', 'running',
                      'analyzing', 'succeeded', 'failed', 'promoting', 'promoted',
                      'rolled_back', 'cancelled')),
    reason        TEXT NOT NULL DEFAULT '',
    author        TEXT NOT NULL,
    config        TEXT NOT NULL,
    config_hash   TEXT NOT NULL,
    promotions    TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    start_at      INTEGER,
    deploy_push   TEXT REFERENCES pushes (id),
    deploying_at  INTEGER,
    running_at    INTEGER,
    measure_from  INTEGER,
    ends_at       INTEGER,
    finished_at   INTEGER,
    breach        TEXT,
    analysis      TEXT,
    promoted_push TEXT REFERENCES pushes (id),
    restore_pending INTEGER NOT NULL DEFAULT 0
);
INSERT INTO experiments_v8 SELECT id, name, spec, state, reason, author, config, config_hash,
    promotions, created_at, updated_at, start_at, deploy_push, deploying_at, running_at,
    measure_from, ends_at, finished_at, breach, analysis, promoted_push, restore_pending
    FROM experiments;
DROP TABLE experiments;
ALTER TABLE experiments_v8 RENAME TO experiments;
CREATE INDEX experiments_restoring ON experiments (id) WHERE restore_pending != 0;
CREATE INDEX experiments_active ON experiments (state)
    WHERE state IN ('pending', 'deploying', 'running', 'analyzing', 'promoting');
CREATE INDEX experiments_by_created ON experiments (created_at DESC, id);

-- The plan of a promotion in waves. The plan is written with the
-- transition to `promoting`, so a restarted controller goes on with the
-- wave it was on: its state says what was done (pushed, watched), and the
-- scheduler resumes from there.
CREATE TABLE experiment_promotions (
    experiment_id   TEXT PRIMARY KEY REFERENCES experiments(id) ON DELETE CASCADE,
    variant         TEXT NOT NULL,
    config_hash     TEXT NOT NULL,
    watch_ms        INTEGER NOT NULL,
    max_series_drop REAL NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE experiment_waves (
    experiment_id TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    number        INTEGER NOT NULL,
    percent       INTEGER NOT NULL,
    -- JSON array of agent ids, in the order they were planned.
    agents        TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',
    push_id       TEXT,
    started_at    INTEGER,
    watch_until   INTEGER,
    finished_at   INTEGER,
    reason        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (experiment_id, number)
) WITHOUT ROWID;
