-- Claiming a batch's event ids in one call that checks the primary key once per event.
-- `INSERT ... ON CONFLICT DO NOTHING` looks every row up in the primary key before inserting it
-- (a full index scan per row) and then descends again to insert: measured here, that look-up
-- was twice the cost of the insert, and claims were half of PostgreSQL's time in a worker. A
-- plain INSERT checks uniqueness in its one descent; copies of applied events are rare, so
-- the plain INSERT is tried first, and only a batch that holds a copy (of an applied event or
-- of another event in the batch) is claimed again the careful way.
--
-- Returns the 1-based positions, in the arrays given, of the events that were not claimed:
-- copies of an event applied within the window, and every copy after the first in the batch.
-- Unqualified names, so a rebuild's search_path claims into the generation's own table.
CREATE FUNCTION eventline_claim_events(
    target_projection text, digests bytea[], topics text[], partitions int4[], offsets int8[]
) RETURNS int8[]
LANGUAGE plpgsql AS $$
DECLARE
    unclaimed int8[];
BEGIN
    BEGIN
        INSERT INTO eventline_applied_events (projection, event_digest, topic, partition, "offset")
        SELECT target_projection, d, t, p, o FROM unnest(digests, topics, partitions, offsets) AS read(d, t, p, o);
        RETURN '{}';
    EXCEPTION WHEN unique_violation THEN
        -- Rolled back to the block's start: claim the first copy of each id that is new.
        WITH batch AS (
            SELECT d, t, p, o, n FROM unnest(digests, topics, partitions, offsets) WITH ORDINALITY AS read(d, t, p, o, n)
        ), first_copies AS (
            SELECT DISTINCT ON (d) d, t, p, o, n FROM batch ORDER BY d, n
        ), claimed AS (
            INSERT INTO eventline_applied_events (projection, event_digest, topic, partition, "offset")
            SELECT target_projection, d, t, p, o FROM first_copies
            ON CONFLICT DO NOTHING
            RETURNING event_digest
        )
        SELECT coalesce(array_agg(b.n ORDER BY b.n), '{}') INTO unclaimed
        FROM batch b
        WHERE NOT EXISTS (SELECT 1 FROM first_copies f JOIN claimed c ON c.event_digest = f.d WHERE f.n = b.n);
        RETURN unclaimed;
    END;
END
$$;
