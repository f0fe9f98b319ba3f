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

-- Per partition, the highest offset the relay has had acknowledged, written in the same
-- transaction as `published_position`. A projection worker whose next offset in a partition is
-- past `last_offset` has applied every event of that partition up to `published_position`
-- without asking the broker for watermarks.
CREATE TABLE relay_partitions (
    topic        text    NOT NULL,
    partition_id integer NOT NULL,
    last_offset  bigint  NOT NULL,
    PRIMARY KEY (topic, partition_id)
);
