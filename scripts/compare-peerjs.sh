#!/usr/bin/env bash
# Compares callmesh with the PeerJS server (npm `peer` 1.0.2) under the same
# load, in one run: `callmesh bench` runs the connect and relay scenarios
# against `callmesh dev --gateways 2` (its per-connection rate limits lifted:
# they are a policy, not capacity) and against PeerJS, and prints both rows
# and the ratios. Not part of `go test ./...`; needs Go, Node.js with npm,
# jq and curl. Everything runs on this machine, load generator included.
#
#   scripts/compare-peerjs.sh                      # the defaults below
#   CONNS=5000 RATE=5000 DURATION=5s scripts/compare-peerjs.sh
#
# Settings (environment): PAIRS (200), RATE (10000 signals/s, the fixed-rate
# relay), SWEEP_FROM (2000 signals/s, the sweep's first step), SWEEP_FACTOR
# (1.5), CONNS (15000 idle connections), DURATION (10s per step), PORT (18080:
# the gateways on PORT and PORT+1), PEER_PORT (19000), SKIP_SWEEP (unset).
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-200}
RATE=${RATE:-10000}
SWEEP_FROM=${SWEEP_FROM:-2000}
SWEEP_FACTOR=${SWEEP_FACTOR:-1.5}
CONNS=${CONNS:-15000}
DURATION=${DURATION:-10s}
PORT=${PORT:-18080}
PEER_PORT=${PEER_PORT:-19000}

for tool in go node npm jq curl; do
  command -v "$tool" >/dev/null || { echo "compare-peerjs: needs $tool" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "--- building callmesh, installing peer@1.0.2 into $work"
go build -o "$work/callmesh" ./cmd/callmesh
npm install --prefix "$work/peer" --no-audit --no-fund --loglevel=error peer@1.0.2 >/dev/null

# Both servers on loopback, with room for the connections.
ulimit -n "$(ulimit -Hn)"
export CALLMESH_JWT_SECRET=compare-peerjs-secret-0123456789abcdef
export CALLMESH_LIMITS_MESSAGE_RATE=1e6 CALLMESH_LIMITS_MESSAGE_BURST=1000000
export CALLMESH_LIMITS_BYTE_RATE=1e12 CALLMESH_LIMITS_BYTE_BURST=1000000000
export CALLMESH_LIMITS_INVITE_RATE=1e6 CALLMESH_LIMITS_INVITE_BURST=1000000
export CALLMESH_LIMITS_ADDR_CONNECT_RATE=0 CALLMESH_LIMITS_USER_CONNECT_RATE=0
"$work/callmesh" dev --gateways 2 --http "127.0.0.1:$PORT" --dev.nats_port 0 --log.level warn >"$work/callmesh.log" 2>&1 &
pids+=($!)
# PeerJS as shipped, but for its limit of 5 000 peers and its 60 s
# heartbeat timeout (the bench sends HEARTBEAT every 20 s anyway).
node "$work/peer/node_modules/peer/dist/bin/peerjs.js" --host 127.0.0.1 --port "$PEER_PORT" \
  --concurrent_limit 1000000 --alive_timeout 600000 >/dev/null 2>"$work/peerjs.log" &
pids+=($!)

ready() { for _ in $(seq 100); do curl -fs "$1" >/dev/null && return 0; sleep 0.1; done; echo "compare-peerjs: $1 not ready" >&2; cat "$work"/*.log >&2; exit 1; }
ready "http://127.0.0.1:$PORT/healthz"
ready "http://127.0.0.1:$((PORT + 1))/healthz"
ready "http://127.0.0.1:$PEER_PORT/"

CM=(--url "ws://127.0.0.1:$PORT/ws,ws://127.0.0.1:$((PORT + 1))/ws")
PJ=(--target peerjs --url "ws://127.0.0.1:$PEER_PORT/peerjs")
bench() { # name, args…: prints the table, keeps the JSON in $work/name.json
  local name=$1; shift
  echo "--- $name: callmesh bench $*"
  "$work/callmesh" bench "$@" --json-out "$work/$name.json"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench connect-callmesh connect --conns "$CONNS" "${CM[@]}"
bench connect-peerjs   connect --conns "$CONNS" "${PJ[@]}"
bench relay-callmesh relay --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" "${CM[@]}"
bench relay-peerjs   relay --pairs "$PAIRS" --rate "$RATE" --duration "$DURATION" "${PJ[@]}"
if [ -z "${SKIP_SWEEP:-}" ]; then
  bench sweep-callmesh relay --sweep --pairs "$PAIRS" --rate "$SWEEP_FROM" --sweep-factor "$SWEEP_FACTOR" --duration "$DURATION" "${CM[@]}"
  bench sweep-peerjs   relay --sweep --pairs "$PAIRS" --rate "$SWEEP_FROM" --sweep-factor "$SWEEP_FACTOR" --duration "$DURATION" "${PJ[@]}"
fi

# The comparison: one row per measure, both servers, callmesh / PeerJS.
get() { jq -r "$2" "$work/$1.json"; }
row() { # label, callmesh value, peerjs value, unit
  awk -v l="$1" -v a="$2" -v b="$3" -v u="$4" 'BEGIN {
    r = (b + 0 != 0) ? sprintf("%.2f×", a / b) : "-"
    printf "| %s | %s %s | %s %s | %s |\n", l, a, u, b, u, r }'
}
echo
echo "--- callmesh vs PeerJS (same machine, same run, load generator beside them)"
echo "| measure | callmesh | PeerJS | callmesh / PeerJS |"
echo "|---|---|---|---|"
if [ -z "${SKIP_SWEEP:-}" ]; then
  row "max sustained relay (p99 ≤ 50 ms, nothing lost), $PAIRS pairs" "$(get sweep-callmesh .best)" "$(get sweep-peerjs .best)" "/s"
fi
row "server CPU per relayed signal at $RATE/s" "$(get relay-callmesh '.steps[0].server_cpu_per_op_us | .*10 | round / 10')" "$(get relay-peerjs '.steps[0].server_cpu_per_op_us | .*10 | round / 10')" "µs"
row "relay p99 at $RATE/s" "$(get relay-callmesh '.steps[0].latency.p99_ms | .*100 | round / 100')" "$(get relay-peerjs '.steps[0].latency.p99_ms | .*100 | round / 100')" "ms"
row "memory per idle connection, whole process, $CONNS connections" "$(get connect-callmesh '.steps[0].server_rss_per_conn_kib | .*10 | round / 10')" "$(get connect-peerjs '.steps[0].server_rss_per_conn_kib | .*10 | round / 10')" "KiB"
row "connects, 64 dialing at once" "$(get connect-callmesh '.steps[0].achieved_rate | round')" "$(get connect-peerjs '.steps[0].achieved_rate | round')" "/s"
row "welcome (PeerJS: OPEN) p99" "$(get connect-callmesh '.steps[0].latency.p99_ms | .*100 | round / 100')" "$(get connect-peerjs '.steps[0].latency.p99_ms | .*100 | round / 100')" "ms"
