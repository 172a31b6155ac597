-- Erased data subjects, each with the placeholder that replaces its id in the projections' rows
-- about it (the columns a projection declares as holding a subject's id). Kept so a re-run of
-- an erasure and a rebuild's cutover put the same placeholder there: counts over those rows stay
-- what they were. The id itself is pseudonymous (the audit names it too); nothing else is kept.
CREATE TABLE eventline_erased_subjects (
    subject text PRIMARY KEY,
    placeholder text NOT NULL UNIQUE,
    erased_at timestamptz NOT NULL DEFAULT now()
);
