-- Schema 3: every agent's own credential, bound to its instance id.
--
-- The enrollment token (--agent-token) admits an instance id that has no
-- row here, or whose credential is still 'pending'; the controller then
-- issues a credential and keeps only its SHA-256. Once the agent says it
-- kept it ('enrolled'), only that credential opens a session for the id.
-- 'revoked' is final: nothing re-admits the id (the agent needs a new one).
-- No foreign key to agents: a credential is issued before the Hello that
-- creates the agent row is stored, and a revoked id stays refused even if
-- its agent row were ever removed.
CREATE TABLE agent_credentials (
    agent_id        TEXT PRIMARY KEY,
    credential_hash TEXT UNIQUE,                 -- SHA-256 hex; NULL if revoked before any
    state           TEXT NOT NULL CHECK (state IN ('pending', 'enrolled', 'revoked')),
    issued_at       INTEGER,
    enrolled_at     INTEGER,
    revoked_at      INTEGER
);
