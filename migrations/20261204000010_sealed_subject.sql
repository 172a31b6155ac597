-- The data subject a sealed value that names its context (`elc1.<base64url JSON [event id, type,
-- field, subject]>.<ciphertext>`, see eventline_core::cipher) names, or NULL for anything else:
-- how rows holding a subject's sealed values are found once a blind index has named the subject.
CREATE FUNCTION eventline_sealed_subject(sealed text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    named text := split_part(sealed, '.', 2);
BEGIN
    IF left(sealed, 5) <> 'elc1.' OR named = '' THEN
        RETURN NULL;
    END IF;
    named := translate(named, '-_', '+/');
    named := named || repeat('=', (4 - length(named) % 4) % 4);
    RETURN convert_from(decode(named, 'base64'), 'UTF8')::jsonb ->> 3;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;
