-- Wasm policies and where they are attached. The module bytes are kept here (the source of
-- truth); compiled artifacts are a cache under the state dir.

CREATE TABLE policies (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    version     TEXT NOT NULL,
    wasm        BLOB NOT NULL,
    created     TEXT NOT NULL
) STRICT;

-- scope: a network id, or '*' for the global default (every network).
CREATE TABLE attachments (
    policy_id  TEXT NOT NULL REFERENCES policies (id),
    scope      TEXT NOT NULL,
    network_id TEXT REFERENCES networks (id) ON DELETE CASCADE,
    priority   INTEGER NOT NULL,
    audit      INTEGER NOT NULL CHECK (audit IN (0, 1)),
    created    TEXT NOT NULL,
    PRIMARY KEY (policy_id, scope),
    CHECK ((scope = '*') = (network_id IS NULL))
) STRICT;
