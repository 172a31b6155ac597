-- Gives the data subjects' key store to a database role of its own (`eventline key-store
-- isolate --role <role>`): the role becomes the owner of the eventline_keys schema and its table,
-- nobody else keeps a privilege on them (the role that runs migrations and projections no longer
-- owns them, so unless it is a superuser it cannot read a key), and the role may append to the
-- audit, since an erasure is recorded in the same transaction that destroys the key. It is given
-- nothing else: it cannot read a projection. Returns false when the role had it already.
CREATE FUNCTION eventline_keys_isolate(key_role name) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    joined boolean := false;
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
    EXECUTE format('ALTER TABLE eventline_keys.subject_keys OWNER TO %I', key_role);
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
