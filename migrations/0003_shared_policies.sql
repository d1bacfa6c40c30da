-- A policy published to the cluster store (etcd): when the cluster no longer has it, it was
-- deleted there, and goes here too. A policy never published is this host's own.
ALTER TABLE policies ADD COLUMN shared INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1));
