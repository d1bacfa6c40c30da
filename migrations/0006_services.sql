-- Services: a virtual IP per service on one network, load-balanced across the endpoints its
-- selector picks. The key columns carry the constraints (a name once; a network with services
-- cannot be deleted; two services may share an address on different ports, which the engine
-- checks); the rest of the object (ports, selector, endpoints, affinity, labels) is its JSON
-- body.
CREATE TABLE services (
    id         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    network_id TEXT NOT NULL REFERENCES networks (id),
    ipv4       TEXT,
    ipv6       TEXT,
    body       TEXT NOT NULL
) STRICT;
