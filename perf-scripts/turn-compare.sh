#!/usr/bin/env bash
# turn-compare.sh — portico's TURN server vs coturn's turnserver, side by side, on
# loopback, in three parts (rounds alternate the servers, rotating which goes first):
#
# 1. Idle allocations (first, on fresh processes: a warm allocator would reuse memory
#    freed earlier): `portico-bench turn --idle` sets up IDLE_ALLOCATIONS allocations
#    with channels, holds them 1 s and reads the server's VmRSS: bytes per allocation.
#    They are spread over 32 users (portico caps allocations per user at 64 per
#    shard) and 20 loopback source addresses (portico allows a burst of 64 401
#    challenges per client IP, then 10/s).
# 2. coturn's own client, turnutils_uclient, with the same flags against both. It
#    saturates near 15k messages/s on this machine, so it cannot show how fast a fast
#    server can go; what it compares is the cost of the same load: the server's CPU
#    time (utime+stime from /proc/PID/stat) per run, plus loss and the client's wall
#    time.
# 3. portico-bench turn: ALLOCATIONS allocations with channels relaying BENCH_SIZE-byte
#    datagrams to `portico-bench target turn-peer` (a UDP echo). First at max rate
#    (WINDOW datagrams outstanding per allocation): relayed datagrams/s and loss.
#    Then at a fixed rate (FIXED_RATE, default half of coturn's median max rate): p50
#    and p99 round-trip time (from the scheduled send: coordinated omission
#    corrected), loss, and the server's CPU time per 1000 datagrams at that equal load.
#    The clients come from BENCH_SOURCES loopback addresses (127.0.0.2 on), as users
#    bench0..bench31 (not uclient's user: allocations turnutils_uclient leaves behind
#    would count against portico's quota of 64 per user).
#
# Placement (2 cores): CPU 0 the TURN server under test (portico --shards 1, or
# turnserver with 1 relay thread); CPU 1 the clients and the peers. Both servers are
# up the whole time, only one is loaded at a time. Same users, realm and relay range
# sizes for both. Bounded: every client run has a message count or a duration and a
# `timeout`; everything started here is stopped on exit.
#
# Environment (defaults): ROUNDS=3 MESSAGES=2000 CLIENTS=10 SIZE=170 (uclient)
#   BENCH_DURATION=5 ALLOCATIONS=50 WINDOW=8 BENCH_SIZE=172 FIXED_RATE=(half of
#   coturn's median max) BENCH_SOURCES=4 IDLE_ALLOCATIONS=1000 UCLIENT=1 (0 skips part 2)
#   PORTICO_PORT=13578 COTURN_PORT=13678 PEER_PORT=13780 BENCH_PEER_PORT=13781
#   PORTICO_RELAY=40000-44999 COTURN_RELAY=45000-49999
#   PORTICO=(built here) — a prebuilt portico binary to test instead
set -euo pipefail

ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-2000}
CLIENTS=${CLIENTS:-10}
SIZE=${SIZE:-170}
BENCH_DURATION=${BENCH_DURATION:-5}
ALLOCATIONS=${ALLOCATIONS:-50}
WINDOW=${WINDOW:-8}
BENCH_SIZE=${BENCH_SIZE:-172}
FIXED_RATE=${FIXED_RATE:-}
BENCH_SOURCES=${BENCH_SOURCES:-4}
IDLE_ALLOCATIONS=${IDLE_ALLOCATIONS:-1000}
UCLIENT=${UCLIENT:-1}
PORTICO_PORT=${PORTICO_PORT:-13578}
COTURN_PORT=${COTURN_PORT:-13678}
PEER_PORT=${PEER_PORT:-13780}
BENCH_PEER_PORT=${BENCH_PEER_PORT:-13781}
PORTICO_RELAY=${PORTICO_RELAY:-40000-44999}
COTURN_RELAY=${COTURN_RELAY:-45000-49999}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for tool in turnserver turnutils_uclient turnutils_peer taskset python3; do
    command -v "$tool" >/dev/null || { echo "turn-compare.sh: $tool not found (apt-get install coturn util-linux python3)" >&2; exit 1; }
done
if [ -z "${PORTICO:-}" ]; then
    cargo build --release -p portico-dataplane -p portico-bench >/dev/null
    PORTICO=$ROOT/target/release/portico
    PORTICO_FROM="built from this tree"
else
    cargo build --release -p portico-bench >/dev/null
    PORTICO_FROM="given as PORTICO=$PORTICO"
fi
BENCH=$ROOT/target/release/portico-bench

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The uclient user, and bench0..bench31 for portico-bench; the same for both servers.
BENCH_USERS=32
P_USERS='{ name = "turn342823", password = "ip411" }'
C_USERS=(--user=turn342823:ip411)
for i in $(seq 0 $((BENCH_USERS - 1))); do
    P_USERS+=", { name = \"bench$i\", password = \"ip411\" }"
    C_USERS+=("--user=bench$i:ip411")
done

cat > "$WORK/portico.toml" <<TOML
[proxy]
ipv6 = false
blacklist_expiration_min = 0
[proxy.listen]
bind = ["127.0.0.1"]
http = $((PORTICO_PORT + 1))
[turn]
listen_udp = $PORTICO_PORT
realm = "dvl-ckl2.net"
relay_address = "127.0.0.1"
relay_ports = "$PORTICO_RELAY"
allowed_peers = ["127.0.0.0/8"]
allow_loopback_peers = true
users = [ $P_USERS ]
TOML

taskset -c 0 "$PORTICO" run --config "$WORK/portico.toml" --shards 1 >"$WORK/portico.log" 2>&1 &
PORTICO_PID=$!; PIDS+=("$PORTICO_PID")
taskset -c 0 turnserver -n --no-cli --no-tls --no-dtls --listening-ip=127.0.0.1 \
    --listening-port="$COTURN_PORT" --relay-ip=127.0.0.1 --min-port="${COTURN_RELAY%-*}" --max-port="${COTURN_RELAY#*-}" \
    --lt-cred-mech "${C_USERS[@]}" --realm=dvl-ckl2.net --allow-loopback-peers \
    --relay-threads=1 --log-file=stdout >"$WORK/coturn.log" 2>&1 &
COTURN_PID=$!; PIDS+=("$COTURN_PID")
taskset -c 1 turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
taskset -c 1 "$BENCH" target turn-peer --listen "127.0.0.1:$BENCH_PEER_PORT" --cpu 1 >"$WORK/peer.log" 2>&1 &
PIDS+=($!)
sleep 1
for pid in "$PORTICO_PID" "$COTURN_PID"; do
    kill -0 "$pid" 2>/dev/null || { echo "turn-compare.sh: a server did not start:" >&2; cat "$WORK"/*.log >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print("%.2f" % (a / b) if b else "NA")' "$1" "$2"; }

# Fields of portico-bench's JSON report, space-separated ("rate", "latency_us.p99", ...).
fields() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
def get(path):
    v = r
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    return "NA" if v is None else ("%.3f" % v if isinstance(v, float) else str(v))
print(" ".join(get(p) for p in sys.argv[2:]))' "$@"
}

# One portico-bench turn run against PORT; the JSON goes to $WORK/run.json, and any
# errors it counted to stderr. Prints the server's CPU ms for the run.
bench_turn() { # port, pid, extra args...
    local port=$1 pid=$2 before after
    shift 2
    before=$(cpu_ticks "$pid")
    if ! timeout $((BENCH_DURATION + 90)) taskset -c 1 "$BENCH" turn --server "127.0.0.1:$port" \
        --peer "127.0.0.1:$BENCH_PEER_PORT" --password ip411 --size "$BENCH_SIZE" \
        --cpu 1 --json "$@" >"$WORK/run.json" 2>"$WORK/run.err"; then
        echo "turn-compare.sh: portico-bench turn against port $port failed:" >&2
        cat "$WORK/run.err" >&2
        exit 1
    fi
    after=$(cpu_ticks "$pid")
    local errs
    errs=$(fields "$WORK/run.json" error_total)
    [ "$errs" = 0 ] || echo "  (port $port: $errs errors: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$WORK/run.json"))" >&2
    echo $(( (after - before) * 1000 / HZ ))
}

echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start)"
echo "portico: $(git rev-parse --short HEAD)$(git status --porcelain 2>/dev/null | grep -q . && echo ' (work tree has uncommitted changes)'); binary $PORTICO_FROM"
echo "coturn:  $(turnserver --version 2>&1 | head -1)"
echo "placement: CPU 0: server (portico --shards 1 / turnserver --relay-threads=1); CPU 1: clients + peers"

# --- 1. idle allocations, fresh processes.
echo
echo "--- idle: $IDLE_ALLOCATIONS allocations with a channel each, held 1 s; VmRSS growth of the server"
for s in portico coturn; do
    case $s in portico) port=$PORTICO_PORT pid=$PORTICO_PID ;; coturn) port=$COTURN_PORT pid=$COTURN_PID ;; esac
    bench_turn "$port" "$pid" --idle --pid "$pid" --allocations "$IDLE_ALLOCATIONS" --settle 1 \
        --user bench --users "$BENCH_USERS" --source 127.0.0.2 --sources 20 >/dev/null
    read -r ok per before after < <(fields "$WORK/run.json" allocations_ok rss_per_allocation_bytes rss_before_kib rss_after_kib)
    echo "idle $s: $ok allocations, $(printf '%.0f' "$per") bytes/allocation (VmRSS $before -> $after KiB)"
done

# --- 2. turnutils_uclient: server CPU for the same paced load.
# One client run against PORT; prints "cpu_ms lost_pct wall_s" for the server PID.
run_once() {
    local port=$1 pid=$2 before after start end out
    before=$(cpu_ticks "$pid")
    start=$(date +%s.%N)
    out=$(timeout 120 taskset -c 1 turnutils_uclient -p "$port" -e 127.0.0.1 -r "$PEER_PORT" \
        -u turn342823 -w ip411 -n "$MESSAGES" -m "$CLIENTS" -l "$SIZE" 127.0.0.1 2>&1 || true)
    end=$(date +%s.%N)
    after=$(cpu_ticks "$pid")
    local lost
    lost=$(printf '%s\n' "$out" | sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' | tail -1)
    echo "$(( (after - before) * 1000 / HZ )) ${lost:-NA} $(echo "$end - $start" | bc)"
}

if [ "$UCLIENT" != 0 ]; then
    echo
    echo "--- uclient: turnutils_uclient -n $MESSAGES -m $CLIENTS -l $SIZE (channels, UDP)"
    declare -a P_CPU C_CPU
    for round in $(seq 1 "$ROUNDS"); do
        read -r pc pl pw < <(run_once "$PORTICO_PORT" "$PORTICO_PID")
        read -r cc cl cw < <(run_once "$COTURN_PORT" "$COTURN_PID")
        echo "round $round: portico cpu ${pc} ms, lost ${pl}%, ${pw}s | coturn cpu ${cc} ms, lost ${cl}%, ${cw}s"
        P_CPU+=("$pc"); C_CPU+=("$cc")
    done
    PM=$(median "${P_CPU[@]}"); CM=$(median "${C_CPU[@]}")
    echo "SUMMARY turn uclient: server CPU per run (median) portico ${PM} ms, coturn ${CM} ms, portico/coturn $(ratio "$PM" "$CM")"
fi

# --- 3. portico-bench turn.
order() { # round -> the two servers, rotated
    if [ $(($1 % 2)) = 1 ]; then echo portico coturn; else echo coturn portico; fi
}
echo
echo "--- portico-bench turn, max rate: $ALLOCATIONS allocations, window $WINDOW, $BENCH_SIZE B payloads, ${BENCH_DURATION}s"
declare -A MAX_RATE MAX_LOSS MAX_P99
for round in $(seq 1 "$ROUNDS"); do
    line="round $round:"
    for s in $(order "$round"); do
        case $s in portico) port=$PORTICO_PORT pid=$PORTICO_PID ;; coturn) port=$COTURN_PORT pid=$COTURN_PID ;; esac
        cpu=$(bench_turn "$port" "$pid" --user bench --users "$BENCH_USERS" --source 127.0.0.2 --sources "$BENCH_SOURCES" \
            --allocations "$ALLOCATIONS" --window "$WINDOW" --duration "$BENCH_DURATION")
        read -r rate loss p99 < <(fields "$WORK/run.json" rate loss_pct latency_us.p99)
        MAX_RATE[$s]+="$rate "; MAX_LOSS[$s]+="$loss "; MAX_P99[$s]+="$p99 "
        line+=" $s $(printf '%.0f' "$rate") dgram/s, loss ${loss}%, p99 RTT $(printf '%.0f' "$p99") µs, cpu ${cpu} ms |"
    done
    echo "${line% |}"
done
# shellcheck disable=SC2086
{
    PR=$(median ${MAX_RATE[portico]}); CR=$(median ${MAX_RATE[coturn]})
    PL=$(median ${MAX_LOSS[portico]}); CL=$(median ${MAX_LOSS[coturn]})
}
echo "SUMMARY turn max-rate (median): portico $(printf '%.0f' "$PR") dgram/s (loss ${PL}%), coturn $(printf '%.0f' "$CR") dgram/s (loss ${CL}%), portico/coturn $(ratio "$PR" "$CR")"

RATE=${FIXED_RATE:-$(python3 -c 'import sys; print(int(float(sys.argv[1]) / 2))' "$CR")}
echo
echo "--- portico-bench turn, fixed rate $RATE dgram/s: $ALLOCATIONS allocations, $BENCH_SIZE B payloads, ${BENCH_DURATION}s"
declare -A FX_P50 FX_P99 FX_LOSS FX_CPU
for round in $(seq 1 "$ROUNDS"); do
    line="round $round:"
    for s in $(order "$round"); do
        case $s in portico) port=$PORTICO_PORT pid=$PORTICO_PID ;; coturn) port=$COTURN_PORT pid=$COTURN_PID ;; esac
        cpu=$(bench_turn "$port" "$pid" --user bench --users "$BENCH_USERS" --source 127.0.0.2 --sources "$BENCH_SOURCES" \
            --allocations "$ALLOCATIONS" --rate "$RATE" --duration "$BENCH_DURATION")
        read -r p50 p99 loss sent unsent < <(fields "$WORK/run.json" latency_us.p50 latency_us.p99 loss_pct sent unsent)
        per_k=$(python3 -c 'import sys; c, n = float(sys.argv[1]), float(sys.argv[2]); print("%.1f" % (c * 1000 / n) if n else "NA")' "$cpu" "$sent")
        FX_P50[$s]+="$p50 "; FX_P99[$s]+="$p99 "; FX_LOSS[$s]+="$loss "; FX_CPU[$s]+="$per_k "
        line+=" $s p50 $(printf '%.0f' "$p50") µs, p99 $(printf '%.0f' "$p99") µs, loss ${loss}%, unsent $unsent, cpu ${per_k} ms/1000 dgram |"
    done
    echo "${line% |}"
done
# shellcheck disable=SC2086
{
    P50P=$(median ${FX_P50[portico]}); P50C=$(median ${FX_P50[coturn]})
    P99P=$(median ${FX_P99[portico]}); P99C=$(median ${FX_P99[coturn]})
    LP=$(median ${FX_LOSS[portico]}); LC=$(median ${FX_LOSS[coturn]})
    CPP=$(median ${FX_CPU[portico]}); CPC=$(median ${FX_CPU[coturn]})
}
echo "SUMMARY turn fixed $RATE dgram/s (median): p50 RTT portico $(printf '%.0f' "$P50P") µs, coturn $(printf '%.0f' "$P50C") µs, portico/coturn $(ratio "$P50P" "$P50C"); p99 RTT portico $(printf '%.0f' "$P99P") µs, coturn $(printf '%.0f' "$P99C") µs, portico/coturn $(ratio "$P99P" "$P99C"); loss portico ${LP}%, coturn ${LC}%; server CPU per 1000 datagrams portico ${CPP} ms, coturn ${CPC} ms, portico/coturn $(ratio "$CPP" "$CPC")"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
