-- Schema 6: audit export and retention. `audit_export` keeps, per
-- destination (a file path, or `-` for stdout), the id of the last entry
-- written there, so a restart resumes where it stopped. `audit_anchor`
-- holds the hash of the last entry retention deleted: the first entry left
-- must name it as its previous one, so the chain still verifies from there.
CREATE TABLE audit_export (
    destination TEXT PRIMARY KEY,
    last_id     INTEGER NOT NULL
);
CREATE TABLE audit_anchor (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    through_id INTEGER NOT NULL,
    hash       TEXT NOT NULL
);
