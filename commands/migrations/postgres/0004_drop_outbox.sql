-- The outbox rows were written by every append and only ever deleted by the relay: it reads the
-- events table by position, which is gap-free in commit order and so already is the outbox.
-- `relay_state.published_position` is how far it has published.
DROP TABLE IF EXISTS outbox;
