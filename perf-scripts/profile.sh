#!/usr/bin/env bash
# profile.sh — where portico spends its CPU under routed HTTP keep-alive load.
#
# Starts the HTTP target on CPU 1, portico (1 shard) on CPU 0 and wrk on CPU 1 (the
# placement of compare.sh), and while wrk runs records portico with
# `perf record -g` for DURATION seconds, then prints `perf report --no-children`
# (the top symbols by self time) and the top call chains.
#
# The event: `cycles` where the CPU exposes hardware counters to this kernel, else
# `cpu-clock` (a timer-based sampler: fine for where time goes, blind inside
# interrupt-disabled regions). On this VM `perf stat -e cycles` says
# "<not supported>", so cpu-clock is what runs here; the script says which it used.
#
# Output: perf.data and the reports in OUT (default: a new directory under /tmp),
# which flamegraph.sh can reuse (`OUT=dir perf-scripts/flamegraph.sh`).
#
# Environment (defaults): DURATION=10 WRK_CONNECTIONS=50 FREQ=999 TARGET_PORT=18180
#   PORTICO_PORT=18190 PORTICO=(built here) OUT=(new directory)
# Needs perf (apt-get install linux-perf) and kernel.perf_event_paranoid <= 2 for
# profiling one's own process (root is fine).
set -euo pipefail
DURATION=${DURATION:-10}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-50}
FREQ=${FREQ:-999}
TARGET_PORT=${TARGET_PORT:-18180}
PORTICO_PORT=${PORTICO_PORT:-18190}
HOST=hq.bench.test
PATH_REQ=/PBX0/APPS/index.htm

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for t in perf wrk taskset ss; do
    command -v "$t" >/dev/null || { echo "profile.sh: '$t' not found" >&2; exit 1; }
done
if [ -z "${PORTICO:-}" ]; then
    cargo build --release -p portico-dataplane -p portico-bench
    PORTICO=$ROOT/target/release/portico
else
    cargo build --release -p portico-bench
fi
BENCH=$ROOT/target/release/portico-bench
OUT=${OUT:-$(mktemp -d -t portico-profile.XXXXXX)}
mkdir -p "$OUT"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_listening() {
    for _ in $(seq 1 100); do
        [ -n "$(ss -Hltn "sport = :$1")" ] && return 0
        sleep 0.1
    done
    echo "profile.sh: nothing listens on $1" >&2
    exit 1
}

if perf stat -e cycles true 2>&1 | grep -q '<not supported>'; then
    EVENT=cpu-clock
else
    EVENT=cycles
fi

taskset -c 1 "$BENCH" target http --listen "127.0.0.1:$TARGET_PORT" --cpu 1 >"$OUT/target.log" 2>&1 &
PIDS+=($!)
wait_listening "$TARGET_PORT"
cat >"$OUT/portico.toml" <<EOF
[proxy]
ipv4 = true
ipv6 = false
log_forwarded = false
log_rejected = true
blacklist_expiration_min = 0

[proxy.listen]
bind = ["127.0.0.1"]
http = $PORTICO_PORT

[[host]]
name = "$HOST"
http = [ { path = "/PBX0/APPS", target = "127.0.0.1", tcp = $TARGET_PORT, tls = $((TARGET_PORT + 1)) } ]
EOF
taskset -c 0 "$PORTICO" run --config "$OUT/portico.toml" --shards 1 >"$OUT/portico.log" 2>&1 &
PORTICO_PID=$!
PIDS+=($PORTICO_PID)
wait_listening "$PORTICO_PORT"

echo "profile.sh: event $EVENT at $FREQ Hz, portico pid $PORTICO_PID on CPU 0, wrk -t1 -c$WRK_CONNECTIONS on CPU 1, ${DURATION}s"
taskset -c 1 wrk -t1 -c"$WRK_CONNECTIONS" -d"$((DURATION + 2))s" -H "Host: $HOST" \
    "http://127.0.0.1:$PORTICO_PORT$PATH_REQ" >"$OUT/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=($WRK_PID)
sleep 1
perf record -e "$EVENT" -F "$FREQ" -g -p "$PORTICO_PID" -o "$OUT/perf.data" -- sleep "$DURATION" \
    2>"$OUT/perf-record.log"
wait "$WRK_PID" || true
grep -E 'Requests/sec' "$OUT/wrk.out" || true

perf report -i "$OUT/perf.data" --no-children --stdio --percent-limit 1 --sort dso,symbol -g none \
    2>/dev/null | grep -v '^$' >"$OUT/report.txt"
perf report -i "$OUT/perf.data" --no-children --stdio --percent-limit 3 --sort symbol -g caller,0.5,callee \
    2>/dev/null >"$OUT/callchains.txt"
echo "=== top symbols by self time ($EVENT samples; full report $OUT/report.txt, call chains $OUT/callchains.txt)"
grep -v "^#" "$OUT/report.txt" | sed -E "s/[[:space:]]+-[[:space:]]+-[[:space:]]*$//" | head -40
echo "perf.data: $OUT/perf.data"
