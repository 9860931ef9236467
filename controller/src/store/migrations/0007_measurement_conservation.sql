-- Schema 7: what a candidate loses. Each measurement keeps the totals of
-- process CPU (cores, from process.cpu.utilization, else CPU seconds) and
-- memory (bytes) the variant exported in that interval, as the agent
-- reported them: the baseline's against a candidate's make its
-- conservation (a candidate that drops a busy process loses its share, one
-- that folds it into a rollup does not). NULL for rows stored before.
ALTER TABLE experiment_measurements ADD COLUMN cpu_total REAL;
ALTER TABLE experiment_measurements ADD COLUMN memory_total REAL;
