-- Schema 4: each agent's policy for remote configs, as it reported it in
-- its Hello (JSON of store::records::AgentPolicy; NULL when the agent does
-- not report one). Pushes are checked against it before they are stored.
ALTER TABLE agents ADD COLUMN policy TEXT;
