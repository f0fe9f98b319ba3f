-- How far the relay has published: every event at or below `published_position` has been
-- acknowledged by the broker (acks=all). Written in the same transaction that deletes the
-- published outbox rows, so it never runs ahead of the broker. Projection workers read it to
-- turn "caught up on every partition" into a global position (see projections::log).
CREATE TABLE relay_state (
    id                 smallint    PRIMARY KEY CHECK (id = 1),
    published_position bigint      NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_state (id, published_position) VALUES (1, 0);
