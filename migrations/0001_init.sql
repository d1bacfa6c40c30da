-- The Container Network Model. The constraints are the last line of defence: the engine checks
-- the same rules first, but racing requests can never get past these.

CREATE TABLE networks (
    id        TEXT PRIMARY KEY NOT NULL,
    name      TEXT NOT NULL UNIQUE,
    driver    TEXT NOT NULL CHECK (driver IN ('bridge', 'overlay')),
    subnet4   TEXT NOT NULL UNIQUE,
    gateway4  TEXT NOT NULL,
    ip_range4 TEXT,
    subnet6   TEXT UNIQUE,
    gateway6  TEXT,
    ip_range6 TEXT,
    internal  INTEGER NOT NULL CHECK (internal IN (0, 1)),
    labels    TEXT NOT NULL,  -- JSON object
    options   TEXT NOT NULL,  -- JSON object
    created   TEXT NOT NULL,
    CHECK ((subnet6 IS NULL) = (gateway6 IS NULL))
) STRICT;

CREATE TABLE sandboxes (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    labels      TEXT NOT NULL,
    netns       TEXT NOT NULL UNIQUE,
    netns_owned INTEGER NOT NULL CHECK (netns_owned IN (0, 1)),
    created     TEXT NOT NULL
) STRICT;

CREATE TABLE endpoints (
    id         TEXT PRIMARY KEY NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks (id),
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id),
    interface  TEXT NOT NULL,
    mac        TEXT NOT NULL,
    ipv4       TEXT,
    ipv6       TEXT,
    aliases    TEXT NOT NULL,  -- JSON array
    labels     TEXT NOT NULL,
    created    TEXT NOT NULL,
    UNIQUE (network_id, sandbox_id),
    UNIQUE (sandbox_id, interface),
    UNIQUE (network_id, ipv4),
    UNIQUE (network_id, ipv6)
) STRICT;

CREATE TABLE published_ports (
    endpoint_id    TEXT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    host_ip        TEXT NOT NULL,  -- '' means every host address
    host_port      INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
    container_port INTEGER NOT NULL CHECK (container_port BETWEEN 1 AND 65535),
    protocol       TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp', 'sctp')),
    PRIMARY KEY (host_ip, host_port, protocol)
) STRICT;

CREATE INDEX published_ports_endpoint ON published_ports (endpoint_id);
