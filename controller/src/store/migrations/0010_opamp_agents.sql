-- Schema 10: agents that speak OpAMP (HTTP transport) next to Phoenix
-- agents. They share the agents table (status, last_seen, labels,
-- credentials, revocation work the same); `kind` tells them apart, and
-- pushes and experiments select Phoenix agents only. The OpAMP reports
-- are kept as JSON in the API's own shapes (phoenix_api::OpampDescription,
-- ComponentHealth, EffectiveConfig, RemoteConfigStatus); each is replaced
-- when the agent reports it again and kept while it leaves it out, as
-- OpAMP agents leave out what did not change.
ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'phoenix'
    CHECK (kind IN ('phoenix', 'opamp'));
ALTER TABLE agents ADD COLUMN opamp_capabilities INTEGER;
ALTER TABLE agents ADD COLUMN opamp_description TEXT;
ALTER TABLE agents ADD COLUMN opamp_health TEXT;
ALTER TABLE agents ADD COLUMN opamp_effective_config TEXT;
ALTER TABLE agents ADD COLUMN opamp_remote_config_status TEXT;
