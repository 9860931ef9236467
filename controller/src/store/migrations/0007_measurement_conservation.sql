-- Schema 7: what a candidate loses. Each measurement keeps the totals of
-- process CPU (cores, from process.cpu.utilization, else CPU seconds) and
-- memory (bytes) the variant exported in that interval, as the agent
-- reported them: the baseline's against a candidate's make its
-- conservation (a candidate that drops a busy process loses its share, one
-- that folds it into a rollup does not). NULL for rows stored before.
ALTER TABLE experiment_measurements ADD COLUMN cpu_total REAL;
ALTER TABLE experiment_measurements ADD COLUMN memory_total REAL;

-- Per candidate and executable, what the agents said it loses each
-- interval: dropped (folded = 0) or folded into a rollup (folded = 1),
-- summed over the intervals measured, so the verdict can name them.
CREATE TABLE experiment_losses (
    experiment_id    TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    variant          TEXT NOT NULL,
    executable       TEXT NOT NULL,
    folded           INTEGER NOT NULL,
    intervals        INTEGER NOT NULL,
    processes        INTEGER NOT NULL,
    cpu_share        REAL NOT NULL,
    memory_share     REAL NOT NULL,
    PRIMARY KEY (experiment_id, variant, executable, folded)
) WITHOUT ROWID;
