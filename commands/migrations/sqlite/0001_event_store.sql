-- The embedded event store. SQLite has one writer at a time and every append runs in
-- BEGIN IMMEDIATE, so positions (computed as max + 1 inside that write transaction) are assigned
-- in commit order and a rolled-back append leaves no hole: a reader never skips an event.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    event_id       BLOB    NOT NULL UNIQUE,
    tenant_id      TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   BLOB    NOT NULL,
    sequence       INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    correlation_id BLOB    NOT NULL,
    causation_id   BLOB    NOT NULL,
    command_id     BLOB    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    CONSTRAINT events_stream_sequence UNIQUE (tenant_id, aggregate_type, aggregate_id, sequence)
);

CREATE TABLE commands (
    tenant_id   TEXT NOT NULL,
    command_id  BLOB NOT NULL,
    receipt     TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, command_id)
);
