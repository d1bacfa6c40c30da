-- A sandbox whose runtime moves and configures each interface itself (Docker's remote driver
-- protocol): wasmnet leaves the container end of each veth in its own namespace.
ALTER TABLE sandboxes ADD COLUMN handoff INTEGER NOT NULL DEFAULT 0 CHECK (handoff IN (0, 1));

-- What a runtime plugin keeps between its calls (Docker's IPAM pools, endpoints created but not
-- yet joined): one JSON body per (kind, id).
CREATE TABLE plugin_records (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT;
