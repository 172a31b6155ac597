-- A declarative projection's new version is built blue/green: its migrations run in the new
-- generation's schema, not on the live tables. So each generation records the version that
-- built it (NULL: recorded before versions were), and the migration history is kept per
-- generation: it follows the tables it describes through cutovers and rollbacks.
ALTER TABLE eventline_generations ADD COLUMN version integer CHECK (version >= 1);

ALTER TABLE eventline_projection_migrations ADD COLUMN generation integer NOT NULL DEFAULT 1;

-- The history so far describes the live tables; every other generation was copied from them.
UPDATE eventline_projection_migrations m SET generation = g.generation
FROM eventline_generations g WHERE g.projection = m.projection AND g.state = 'live';

INSERT INTO eventline_projection_migrations (projection, generation, version, description, checksum, applied_at)
SELECT m.projection, g.generation, m.version, m.description, m.checksum, m.applied_at
FROM eventline_projection_migrations m JOIN eventline_generations g ON g.projection = m.projection
WHERE g.generation <> m.generation;

ALTER TABLE eventline_projection_migrations
    ALTER COLUMN generation DROP DEFAULT,
    DROP CONSTRAINT eventline_projection_migrations_pkey,
    ADD PRIMARY KEY (projection, generation, version);
