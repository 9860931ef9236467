-- Schema 11: pushes reach OpAMP agents. An agent's config kind says which
-- pushes it takes: `phoenix` (a native Phoenix agent, or a Phoenix agent
-- speaking OpAMP: identifying attribute service.name = phoenix-agent) or
-- `opaque` (any other OpAMP agent: its config is not parsed here). It
-- follows the agent's latest AgentDescription; agents stored before this
-- version get it from the description they reported.
ALTER TABLE agents ADD COLUMN config_kind TEXT NOT NULL DEFAULT 'phoenix'
    CHECK (config_kind IN ('phoenix', 'opaque'));
UPDATE agents SET config_kind = 'opaque'
    WHERE kind = 'opamp'
      AND COALESCE(json_extract(opamp_description, '$.identifying."service.name"'), '')
          <> 'phoenix-agent';
-- A push names the config kind of its targets; OpAMP agents receive its
-- config as one file of their config map, under `file_name` (empty: the
-- agent's only file) with this content type.
ALTER TABLE pushes ADD COLUMN config_kind TEXT NOT NULL DEFAULT 'phoenix'
    CHECK (config_kind IN ('phoenix', 'opaque'));
ALTER TABLE pushes ADD COLUMN content_type TEXT NOT NULL DEFAULT 'text/yaml';
ALTER TABLE pushes ADD COLUMN file_name TEXT NOT NULL DEFAULT '';
