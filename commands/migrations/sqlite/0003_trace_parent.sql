-- The W3C trace context of the command that appended each event (NULL when it was not traced).
ALTER TABLE events ADD COLUMN trace_parent TEXT;
