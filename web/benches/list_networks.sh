#!/usr/bin/env bash
# Scenario benchmark: GET /v1/networks with 1,000 networks, over loopback TCP, measured by wrk.
# Not part of the test suite. Run from anywhere: web/benches/list_networks.sh
# Uses the release build; installs wrk (Debian) if missing. Touches nothing outside a temp dir
# and loopback, and stops the server it started (by PID) when done.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet
dir=$(mktemp -d)
./target/release/wasmnet serve --config /dev/null --state-dir "$dir/state" --run-dir "$dir/run" \
  --listen 127.0.0.1:0 --default-pool base=10.0.0.0/8,size=24 --log warn >"$dir/out" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do grep -q '^database:' "$dir/out" 2>/dev/null && break; sleep 0.1; done
line=$(grep 'on http://' "$dir/out")
addr=$(sed -E 's#.*http://([^ ]+) .*#\1#' <<<"$line")
token=$(cat "$dir/state/token")
sock="$dir/run/wasmnet.sock"
for i in $(seq 1000); do
  curl -sf --unix-socket "$sock" -H 'content-type: application/json' \
    -d "{\"name\":\"net-$i\",\"labels\":{\"team\":\"t$((i % 10))\"}}" http://x/v1/networks >/dev/null
done
echo "1000 networks created; wrk -t2 -c32 -d10s against http://$addr"
for path in "/v1/networks" "/v1/networks?limit=1000"; do
  echo "== GET $path"
  wrk -t2 -c32 -d10s --latency -H "Authorization: Bearer $token" "http://$addr$path" |
    grep -E 'Requests/sec|Transfer/sec|^ +(50|90|99)%|Latency  '
done
