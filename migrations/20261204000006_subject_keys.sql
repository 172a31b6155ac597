-- The data keys of data subjects: personal fields are sealed under them (eventline_core::cipher).
-- Each is kept only wrapped by the key-encryption key, which is never in the database. An erased
-- subject keeps its row without a key: the fence that stops its key from being made again, so
-- personal data published for it later is refused instead of sealed under a new key.
CREATE SCHEMA IF NOT EXISTS eventline_keys;
CREATE TABLE eventline_keys.subject_keys (
    subject text PRIMARY KEY,
    wrapped_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
    CONSTRAINT subject_keys_erased_have_no_key CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
