-- The erased-subject guard also removes personal data in clear from a row about an erased
-- subject: a personal column (an argument `personal:<column>`) of a row whose subject column holds
-- an erased subject's id, or its placeholder, is set to NULL unless it holds a sealed value
-- (which its destroyed key already makes unreadable). Such values were projected before sealing
-- was turned on, or are read again from Kafka records of that time by a replay or a rebuild.
-- Arguments without the prefix are subject columns, as before.
CREATE OR REPLACE FUNCTION eventline_erased_subject_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    written jsonb := to_jsonb(NEW);
    replacements jsonb := '{}';
    argument text;
    found_placeholder text;
    about_erased boolean := false;
BEGIN
    FOREACH argument IN ARRAY TG_ARGV LOOP
        CONTINUE WHEN argument LIKE 'personal:%';
        SELECT e.placeholder INTO found_placeholder
        FROM public.eventline_erased_subjects AS e
        WHERE e.subject = written ->> argument OR e.placeholder = written ->> argument;
        IF FOUND THEN
            about_erased := true;
            replacements := replacements || jsonb_build_object(argument, found_placeholder);
        END IF;
    END LOOP;
    IF about_erased THEN
        FOREACH argument IN ARRAY TG_ARGV LOOP
            CONTINUE WHEN argument NOT LIKE 'personal:%';
            argument := substr(argument, length('personal:') + 1);
            IF written ->> argument IS NOT NULL AND written ->> argument NOT LIKE 'elc_.%' THEN
                replacements := replacements || jsonb_build_object(argument, NULL);
            END IF;
        END LOOP;
    END IF;
    IF replacements <> '{}' THEN
        NEW := jsonb_populate_record(NEW, replacements);
    END IF;
    RETURN NEW;
END
$$;
