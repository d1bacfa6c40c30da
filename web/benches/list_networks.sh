#!/usr/bin/env bash
# Scenario benchmark: GET /v1/networks with 1,000 networks, over loopback TCP, measured by wrk.
# Not part of the test suite; needs root. Run from anywhere: web/benches/list_networks.sh
# The daemon runs in a throwaway network namespace (its 1,000 bridges and its firewall live
# there) and wrk runs inside it too; the namespace, the temp dir and the daemon (by PID) are
# removed at the end. Uses the release build; installs wrk (Debian) if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet
dir=$(mktemp -d)
ns="wnbench-$$"
ip netns add "$ns"
ip -n "$ns" link set lo up
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
nsenter --net="/run/netns/$ns" ./target/release/wasmnet serve --config /dev/null \
  --state-dir "$dir/state" --run-dir "$dir/run" --listen 127.0.0.1:0 \
  --default-pool base=10.0.0.0/8,size=24 --log warn >"$dir/out" &
pid=$!
for _ in $(seq 100); do grep -q '^database:' "$dir/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -nE 's#.*on http://([^ ]+) .*#\1#p' "$dir/out")
token=$(cat "$dir/state/token")
sock="$dir/run/wasmnet.sock"
for i in $(seq 1000); do
  curl -sf --unix-socket "$sock" -H 'content-type: application/json' \
    -d "{\"name\":\"net-$i\",\"labels\":{\"team\":\"t$((i % 10))\"}}" http://x/v1/networks >/dev/null
done
echo "1000 networks created; wrk -t2 -c32 -d10s against http://$addr (inside $ns)"
for path in "/v1/networks" "/v1/networks?limit=1000"; do
  echo "== GET $path"
  ip netns exec "$ns" wrk -t2 -c32 -d10s --latency -H "Authorization: Bearer $token" "http://$addr$path" |
    grep -E 'Requests/sec|Transfer/sec|^ +(50|90|99)%|Latency  '
done
