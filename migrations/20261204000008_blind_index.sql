-- Blind indexes: the digest of a personal field's value (HMAC under a key derived from the
-- key-encryption key, eventline_core::cipher::BlindIndexKey) beside the data subject it leads to,
-- so a sealed value is found by equality without opening every row. Kept with the keys, never in
-- Kafka: erasing a subject deletes its digests in the transaction that destroys its key.
CREATE TABLE eventline_keys.blind_index (
    index_name text NOT NULL,
    digest bytea NOT NULL,
    subject text NOT NULL,
    PRIMARY KEY (index_name, digest, subject)
);
CREATE INDEX blind_index_subject ON eventline_keys.blind_index (subject);

-- The key store's role owns every table of eventline_keys, this one included.
CREATE OR REPLACE FUNCTION eventline_keys_isolate(key_role name) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    joined boolean := false;
    key_table text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = key_role) THEN
        RAISE EXCEPTION 'role "%" does not exist: create it first (CREATE ROLE % LOGIN PASSWORD ''…'')',
            key_role, quote_ident(key_role) USING ERRCODE = 'undefined_object';
    END IF;
    IF key_role = current_user THEN
        RAISE EXCEPTION 'role "%" is the role running this: the key store''s role must be another one', key_role
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = key_role AND rolsuper) THEN
        RAISE EXCEPTION 'role "%" is a superuser: it could read the projections', key_role
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT nspowner::regrole::name FROM pg_namespace WHERE nspname = 'eventline_keys') = key_role THEN
        RETURN false;
    END IF;
    IF pg_has_role(current_user, key_role, 'MEMBER')
        AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'role "%" is a member of "%": it would go on reading the keys; revoke that first',
            current_user, key_role USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Giving an object away takes membership of its new owner; held no longer than needed.
    IF NOT pg_has_role(current_user, key_role, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', key_role, current_user);
        joined := true;
    END IF;
    EXECUTE format('ALTER SCHEMA eventline_keys OWNER TO %I', key_role);
    FOR key_table IN SELECT tablename FROM pg_tables WHERE schemaname = 'eventline_keys' LOOP
        EXECUTE format('ALTER TABLE eventline_keys.%I OWNER TO %I', key_table, key_role);
    END LOOP;
    REVOKE ALL ON SCHEMA eventline_keys FROM PUBLIC;
    REVOKE ALL ON ALL TABLES IN SCHEMA eventline_keys FROM PUBLIC;
    EXECUTE format('GRANT SELECT (id), INSERT ON eventline_audit TO %I', key_role);
    EXECUTE format('GRANT SELECT, UPDATE ON eventline_audit_head TO %I', key_role);
    IF joined THEN
        EXECUTE format('REVOKE %I FROM %I', key_role, current_user);
    END IF;
    RETURN true;
END
$$;
