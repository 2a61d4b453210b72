#!/usr/bin/env bash
# turn-compare.sh — portico's TURN server vs coturn's turnserver, side by side, on
# loopback, driven by coturn's own client (turnutils_uclient) with the same flags.
#
# turnutils_uclient saturates near 15k messages/s on this machine, so it cannot show
# how fast a fast server can go. What this script compares is the cost of the same
# load: the server's CPU time (utime+stime from /proc/PID/stat) per 1000 relayed
# messages, plus loss and the client's wall time, alternating servers each round.
#
# Placement (2 cores): CPU 0 the TURN server under test (portico --shards 1, or
# turnserver with 1 relay thread); CPU 1 turnutils_uclient and turnutils_peer.
# Bounded: every client run has a message count and a `timeout`; everything started
# here is stopped on exit.
#
# Environment (defaults): ROUNDS=3 MESSAGES=2000 CLIENTS=10 SIZE=170
#   PORTICO_PORT=13578 COTURN_PORT=13678 PEER_PORT=13780
set -euo pipefail

ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-2000}
CLIENTS=${CLIENTS:-10}
SIZE=${SIZE:-170}
PORTICO_PORT=${PORTICO_PORT:-13578}
COTURN_PORT=${COTURN_PORT:-13678}
PEER_PORT=${PEER_PORT:-13780}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
for tool in turnserver turnutils_uclient turnutils_peer taskset; do
    command -v "$tool" >/dev/null || { echo "turn-compare.sh: $tool not found (apt-get install coturn util-linux)" >&2; exit 1; }
done
cargo build --release -p portico-dataplane >/dev/null
PORTICO=${PORTICO:-$ROOT/target/release/portico}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

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
relay_ports = "40000-44999"
allowed_peers = ["127.0.0.0/8"]
allow_loopback_peers = true
users = [ { name = "turn342823", password = "ip411" } ]
TOML

taskset -c 0 "$PORTICO" run --config "$WORK/portico.toml" --shards 1 >"$WORK/portico.log" 2>&1 &
PORTICO_PID=$!; PIDS+=("$PORTICO_PID")
taskset -c 0 turnserver -n --no-cli --no-tls --no-dtls --listening-ip=127.0.0.1 \
    --listening-port="$COTURN_PORT" --relay-ip=127.0.0.1 --min-port=45000 --max-port=49999 \
    --lt-cred-mech --user=turn342823:ip411 --realm=dvl-ckl2.net --allow-loopback-peers \
    --relay-threads=1 --log-file=stdout >"$WORK/coturn.log" 2>&1 &
COTURN_PID=$!; PIDS+=("$COTURN_PID")
taskset -c 1 turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
sleep 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

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

echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "portico: $(git rev-parse --short HEAD); coturn: $(turnserver --version 2>&1 | head -1)"
echo "client: turnutils_uclient -n $MESSAGES -m $CLIENTS -l $SIZE (channels, UDP); CPU 0: server, CPU 1: client + peer"
declare -a P_CPU C_CPU
for round in $(seq 1 "$ROUNDS"); do
    read -r pc pl pw < <(run_once "$PORTICO_PORT" "$PORTICO_PID")
    read -r cc cl cw < <(run_once "$COTURN_PORT" "$COTURN_PID")
    echo "round $round: portico cpu ${pc} ms, lost ${pl}%, ${pw}s | coturn cpu ${cc} ms, lost ${cl}%, ${cw}s"
    P_CPU+=("$pc"); C_CPU+=("$cc")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
PM=$(median "${P_CPU[@]}"); CM=$(median "${C_CPU[@]}")
# Messages relayed per run: uclient sends MESSAGES per session, both ways.
echo "SUMMARY turn: server CPU per run (median) portico ${PM} ms, coturn ${CM} ms, portico/coturn $(echo "scale=2; $PM / ($CM + 0.0001)" | bc)"
