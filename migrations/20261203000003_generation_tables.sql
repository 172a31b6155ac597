-- The tables each generation owns (NULL: recorded before this), so a version that adds or drops
-- a table is switched whole: a cutover or rollback moves every table either generation has.
ALTER TABLE eventline_generations ADD COLUMN tables text[];

-- The write lock every writer of a projection takes first (ROW EXCLUSIVE), on those of `tables`
-- the connection's search_path finds: a process running a newer definition than the live
-- generation's may declare a table that generation does not have yet.
CREATE FUNCTION eventline_enter_projection(tables text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY tables LOOP
        IF to_regclass(quote_ident(name)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE %I IN ROW EXCLUSIVE MODE', name);
        END IF;
    END LOOP;
END
$$;
