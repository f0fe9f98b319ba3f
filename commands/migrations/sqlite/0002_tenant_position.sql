-- An auditor pages through one tenant's events in log order without scanning everyone's.
CREATE INDEX events_tenant_position ON events (tenant_id, position);
