#!/usr/bin/env bash
# wrk-http.sh — routed HTTP/1.1 keep-alive requests/s through portico vs. the direct
# path, on loopback, with wrk as the client.
#
# Placement (this machine has 2 cores):
#   CPU 0: portico (1 shard)
#   CPU 1: the target (portico-bench target http) and wrk
# The target and wrk share CPU 1 in both runs, so the direct figure is the ceiling the
# client and target allow; the ratio portico/direct says what routing costs.
#
# Rounds alternate portico and direct so slow drift on a shared machine hits both.
# Every process started here is stopped on exit (trap). Bounded: each wrk run is
# DURATION seconds under a `timeout`.
#
# Environment (defaults): ROUNDS=3 DURATION=10 WRK_THREADS=2 WRK_CONNECTIONS=50
#   TARGET_PORT=18080 PORTICO_PORT=18090
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-50}
TARGET_PORT=${TARGET_PORT:-18080}
PORTICO_PORT=${PORTICO_PORT:-18090}
HOST=hq.dvl-ckl2.net
PATH_REQ=/PBX0/APPS/index.htm

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

need() { command -v "$1" >/dev/null || { echo "wrk-http.sh: '$1' not found (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need taskset util-linux
need ss iproute2
need curl curl

cargo build --release -p portico-dataplane -p portico-bench

PORTICO=$ROOT/target/release/portico
BENCH=$ROOT/target/release/portico-bench
WORK=$(mktemp -d -t portico-wrk-http.XXXXXX)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give each a few seconds to exit, then force it.
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { [ -z "$(ss -Hltn "sport = :$1")" ]; }
wait_listening() { # port, name, pid, log
    for _ in $(seq 1 100); do
        [ -n "$(ss -Hltn "sport = :$1")" ] && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "wrk-http.sh: $2 is not listening on port $1; its output:" >&2
    cat "$4" >&2
    exit 1
}

for port in "$TARGET_PORT" "$PORTICO_PORT"; do
    port_free "$port" || { echo "wrk-http.sh: port $port is in use" >&2; exit 1; }
done

taskset -c 1 "$BENCH" target http --listen "127.0.0.1:$TARGET_PORT" --name target --cpu 1 \
    >"$WORK/target.log" 2>&1 &
PIDS+=($!)
wait_listening "$TARGET_PORT" "the target" "${PIDS[-1]}" "$WORK/target.log"

cat >"$WORK/portico.toml" <<EOF
[proxy]
ipv4 = true
ipv6 = false
log_forwarded = false
log_rejected = true
blacklist_expiration_min = 0      # never blacklist: the benchmark's source is loopback

[proxy.listen]
bind = ["127.0.0.1"]
http = $PORTICO_PORT

[[host]]
name = "$HOST"
http = [
  { path = "", target = "127.0.0.1", tcp = $TARGET_PORT, tls = 18443 },
]
EOF

taskset -c 0 "$PORTICO" run --config "$WORK/portico.toml" --shards 1 >"$WORK/portico.log" 2>&1 &
PIDS+=($!)
wait_listening "$PORTICO_PORT" "portico" "${PIDS[-1]}" "$WORK/portico.log"

# Both paths must answer 200 before anything is measured.
check() { # url, name, [host header]
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 ${3:+-H "Host: $3"} "$1" || true)
    if [ "$code" != 200 ]; then
        echo "wrk-http.sh: $2 answered '$code' instead of 200 for $1" >&2
        echo "--- portico output:" >&2
        cat "$WORK/portico.log" >&2
        exit 1
    fi
}
check "http://127.0.0.1:$TARGET_PORT$PATH_REQ" "the target"
check "http://127.0.0.1:$PORTICO_PORT$PATH_REQ" "portico" "$HOST"

echo "machine: $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); portico: $("$PORTICO" --version 2>/dev/null || echo '?')"
echo "placement: portico on CPU 0 (1 shard); target and wrk on CPU 1"
echo "wrk: -t$WRK_THREADS -c$WRK_CONNECTIONS -d${DURATION}s, $ROUNDS rounds alternating"
echo

RATE=
run_wrk() { # name, url, [host header]; prints wrk's output, sets RATE
    echo "=== $1: $2"
    if ! timeout $((DURATION + 30)) taskset -c 1 wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" \
        -d"${DURATION}s" --latency ${3:+-H "Host: $3"} "$2" >"$WORK/wrk.out" 2>&1; then
        cat "$WORK/wrk.out"
        echo "wrk-http.sh: wrk against $1 failed" >&2
        exit 1
    fi
    cat "$WORK/wrk.out"
    echo
    RATE=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk.out")
    if grep -qE '^ *(Non-2xx|Socket errors)' "$WORK/wrk.out"; then
        WARNINGS+=("$1 round $round: $(grep -E '^ *(Non-2xx|Socket errors)' "$WORK/wrk.out" | tr -s ' ' | tr '\n' ';')")
    fi
    if [ -z "$RATE" ]; then
        echo "wrk-http.sh: no Requests/sec in wrk's output for $1" >&2
        exit 1
    fi
}

PORTICO_RATES=()
DIRECT_RATES=()
WARNINGS=()
for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round/$ROUNDS"
    run_wrk portico "http://127.0.0.1:$PORTICO_PORT$PATH_REQ" "$HOST"
    PORTICO_RATES+=("$RATE")
    run_wrk direct "http://127.0.0.1:$TARGET_PORT$PATH_REQ" "$HOST"
    DIRECT_RATES+=("$RATE")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
P=$(median "${PORTICO_RATES[@]}")
D=$(median "${DIRECT_RATES[@]}")
for w in "${WARNINGS[@]}"; do
    echo "WARNING (errors count as requests in wrk's rate): $w"
done
echo "portico req/s per round: ${PORTICO_RATES[*]}"
echo "direct  req/s per round: ${DIRECT_RATES[*]}"
awk -v p="$P" -v d="$D" 'BEGIN { printf "SUMMARY http keep-alive: portico median %.0f req/s, direct median %.0f req/s, portico/direct %.3f\n", p, d, (d > 0 ? p / d : 0) }'
