-- Schema 9: candidates disqualified by a guardrail. A candidate runs in
-- shadow, so one that hides a critical process or costs too much CPU is
-- dropped from the experiment alone instead of aborting it. The first
-- breach of a candidate is its row (later ones are ignored); `breach` is
-- the breach as `experiments.breach` stores one (guardrail, fields,
-- message). `config_hash` is the reduced config the scheduler composed
-- without every candidate disqualified so far, recorded before it is
-- pushed; `push_id` the push that took it to the targets. Both NULL: not
-- acted on yet. Kept with the experiment (part of its record), not pruned
-- with the measurements.
CREATE TABLE experiment_disqualified (
    experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant       TEXT NOT NULL,
    at            INTEGER NOT NULL,
    guardrail     TEXT NOT NULL,
    breach        TEXT NOT NULL,
    push_id       TEXT,
    config_hash   TEXT,
    PRIMARY KEY (experiment_id, variant)
) WITHOUT ROWID;
