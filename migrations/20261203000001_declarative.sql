-- Declarative projections (a folder of SQL, no Rust): which of a projection's migration files
-- ran, with their checksums so an edited applied file is refused, and the `apply` function
-- installed for each of its versions, in a schema of its own.
CREATE TABLE eventline_projection_migrations (
    projection text NOT NULL,
    version bigint NOT NULL,
    description text NOT NULL,
    checksum bytea NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version)
);

CREATE TABLE eventline_projection_functions (
    projection text NOT NULL,
    version integer NOT NULL,
    function_schema text NOT NULL,
    checksum bytea NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version)
);
