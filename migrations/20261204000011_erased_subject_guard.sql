-- Keeps an erased subject's id out of the columns a projection declares as holding one, for
-- every row written after its erasure: a replay in place, a late event, a rebuild. Installed by
-- `eventline erase` (and by workers once any subject was erased) as a BEFORE INSERT OR UPDATE
-- trigger whose arguments name the table's subject columns; each is replaced by the subject's
-- placeholder when the id is an erased subject's. Before any erasure no table has it: no cost.
CREATE FUNCTION eventline_erased_subject_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    written jsonb := to_jsonb(NEW);
    replacements jsonb := '{}';
    subject_column text;
    found_placeholder text;
BEGIN
    FOREACH subject_column IN ARRAY TG_ARGV LOOP
        SELECT e.placeholder INTO found_placeholder
        FROM public.eventline_erased_subjects AS e
        WHERE e.subject = written ->> subject_column;
        IF FOUND THEN
            replacements := replacements || jsonb_build_object(subject_column, found_placeholder);
        END IF;
    END LOOP;
    IF replacements <> '{}' THEN
        NEW := jsonb_populate_record(NEW, replacements);
    END IF;
    RETURN NEW;
END
$$;
