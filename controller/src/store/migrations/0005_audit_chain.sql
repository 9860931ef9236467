-- Schema 5: the audit log is hash-chained. Each entry keeps the hash of the
-- entry before it and its own, SHA-256 over the previous hash and its fields
-- (store/audit_chain.rs), so an entry edited, deleted or inserted behind the
-- controller's back breaks the chain at that point. Entries written before
-- this schema have no hash: they form an unchained prefix, and the chain
-- starts after them.
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
