-- A sandbox wasmnet created also appears to `ip netns` under this name (a bind mount in
-- /run/netns), with `ip netns exec`'s resolv.conf at resolv_conf. Kept as made, so a later
-- change of the prefix still removes what was made.
ALTER TABLE sandboxes ADD COLUMN netns_name TEXT;
ALTER TABLE sandboxes ADD COLUMN resolv_conf TEXT;
