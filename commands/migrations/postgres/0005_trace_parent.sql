-- The W3C trace context of the command that appended each event (NULL when it was not traced),
-- so the relay and the workers continue the request's trace. Expand-only: older binaries never
-- name the column and keep working during a rolling upgrade.
ALTER TABLE events ADD COLUMN IF NOT EXISTS trace_parent text;
