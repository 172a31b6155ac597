-- The audit becomes a hash chain. Each entry records its place in the chain (`seq`), the hash of
-- the entry before it and its own hash over its contents and that one, so an entry edited,
-- deleted or slipped in afterwards no longer verifies (`eventline audit verify`). The chain's
-- head (last place and hash) is kept in a one-row table whose row lock also orders concurrent
-- appends. Entries are only appended, through `eventline_audit_append`; updating, deleting or
-- truncating them is refused. Entries written before this migration stay as they were, outside
-- the chain, and verify reports how many there are.
ALTER TABLE eventline_audit
    ADD COLUMN origin    text,
    ADD COLUMN seq       bigint UNIQUE,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN row_hash  bytea;

CREATE TABLE eventline_audit_head (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq            bigint  NOT NULL,
    hash           bytea   NOT NULL,
    -- Entries up to this id were written before the chain.
    legacy_through bigint  NOT NULL
);
INSERT INTO eventline_audit_head (seq, hash, legacy_through)
SELECT 0, decode(repeat('00', 32), 'hex'), coalesce(max(id), 0) FROM eventline_audit;

-- An entry's hash: SHA-256 of the previous entry's hash and the entry's contents, written as a
-- JSON array (jsonb's text form is canonical, the time in UTC with microseconds).
CREATE FUNCTION eventline_audit_hash(
    prev bytea, seq bigint, at timestamptz, actor text, action text, projection text,
    target jsonb, reason text, outcome jsonb, origin text
) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(prev || convert_to(jsonb_build_array(
        seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        actor, action, projection, target, reason, outcome, origin)::text, 'UTF8'))
$$;

-- Appends an entry at the chain's head. Where it came from is what the session says of itself:
-- its application name (eventline names its command there) and the client's address.
CREATE FUNCTION eventline_audit_append(
    entry_actor text, entry_action text, entry_projection text, entry_target jsonb, entry_reason text,
    entry_outcome jsonb
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    head eventline_audit_head;
    stamped timestamptz := date_trunc('microseconds', now());
    entry_origin text := coalesce(nullif(current_setting('application_name', true), ''), 'unnamed client')
        || ' from ' || coalesce(host(inet_client_addr()), 'the local socket');
    entry_hash bytea;
    entry_id bigint;
BEGIN
    SELECT * INTO head FROM eventline_audit_head FOR UPDATE;
    entry_hash := eventline_audit_hash(head.hash, head.seq + 1, stamped, entry_actor, entry_action,
        entry_projection, entry_target, entry_reason, entry_outcome, entry_origin);
    INSERT INTO eventline_audit (at, actor, action, projection, target, reason, outcome, origin, seq, prev_hash, row_hash)
    VALUES (stamped, entry_actor, entry_action, entry_projection, entry_target, entry_reason, entry_outcome,
        entry_origin, head.seq + 1, head.hash, entry_hash)
    RETURNING id INTO entry_id;
    UPDATE eventline_audit_head SET seq = head.seq + 1, hash = entry_hash;
    RETURN entry_id;
END
$$;

CREATE FUNCTION eventline_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'eventline_audit is append-only: entries are never changed or removed';
END
$$;

CREATE TRIGGER eventline_audit_append_only
    BEFORE UPDATE OR DELETE ON eventline_audit
    FOR EACH ROW EXECUTE FUNCTION eventline_audit_refuse_change();
CREATE TRIGGER eventline_audit_no_truncate
    BEFORE TRUNCATE ON eventline_audit
    FOR EACH STATEMENT EXECUTE FUNCTION eventline_audit_refuse_change();
