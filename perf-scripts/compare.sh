#!/usr/bin/env bash
# compare.sh — portico side by side with HAProxy and the direct path, on loopback, in
# one run: HTTP keep-alive (wrk and portico-bench), HTTP keep-alive at a fixed rate
# (half of portico's maximum: the p99 latency a proxy adds), HTTP new connection, full TLS
# handshakes (ECDSA P-256 and RSA-2048 server certificates), HTTPS keep-alive, tunnel
# throughput (HTTP Upgrade, then relayed bytes), SIP REGISTER (new connection and
# persistent), LDAP bind+search, H.323 first-message routing (a committed H.225.0
# vector per new connection, echoed back by the target), and idle memory per
# connection (an idle upgraded tunnel twice: in a portico process of its own that has
# served nothing, and after the HTTP idle run in the loaded one). Prints one table of
# medians and ratios.
#
# Placement (this machine has 2 cores):
#   CPU 0: the proxy under test — portico (1 shard) or HAProxy (nbthread 1); both are
#          started at once and stay up, only one is loaded at a time
#   CPU 1: the load generator (wrk, portico-bench) and the built-in targets
# The direct rows run the same generator against the same targets with no proxy:
# the ceiling that generator and targets allow on CPU 1.
#
# Same rules for both proxies: a haproxy.cfg is generated from the rules portico gets
# (Host + path ACLs for the seed-like hosts; anything else 403), with
# `http-reuse always`, `option forwardfor` (portico adds X-Forwarded-For too),
# `option splice-auto`, nbthread 1, maxconn 5000 (the open-file limit is 20000).
# HTTPS is re-encrypted to a TLS target by both (portico sends an HTTPS request to the
# rule's tls port; HAProxy `ssl verify none`; portico verifies nothing either without
# target_ca). SIP, LDAP and H.323: HAProxy has no SIP From / LDAP bind-domain /
# H.323 gatekeeper-id routing, so its rows are a plain TCP-mode relay (a lower bound
# on the work, not the same work).
#
# TURN rows (if coturn's turnserver is installed): portico's TURN server (a separate
# `portico run --shards 1` with only [turn], fresh for the idle row) against coturn
# (turnserver --relay-threads=1), both on CPU 0, same users and relay range sizes, in
# the HAProxy column (ratios p÷coturn). `portico-bench turn`, channels over UDP to
# `portico-bench target turn-peer` (a UDP echo on CPU 1): TURN_ALLOCATIONS
# allocations from 4 loopback source addresses, 172-byte payloads, max rate (8
# outstanding per allocation) and a fixed TURN_RATE (RTT from the scheduled send);
# and idle allocations: VmRSS growth per allocation held open.
#
# Rounds alternate the systems within each scenario, rotating which goes first, so
# slow drift on a shared machine hits all of them. Every process started here is
# stopped on exit (trap). Each load run is bounded by DURATION (and a `timeout`).
#
# Usage: perf-scripts/compare.sh [--quick]
# Environment (defaults): ROUNDS=3 DURATION=5 CONNECTIONS=50 WRK_THREADS=1
#   IDLE_CONNECTIONS=2000 BASE_PORT=19100 OUT=(a new directory under /tmp)
#   TURN_ALLOCATIONS=50 TURN_RATE=20000 IDLE_ALLOCATIONS=1000
#   TURN_RELAY_PORTICO=40000-44999 TURN_RELAY_COTURN=45000-49999
#   PORTICO=(built here) — a prebuilt portico binary to test instead
# --quick: ROUNDS=1 DURATION=2 IDLE_CONNECTIONS=500 IDLE_ALLOCATIONS=200 (a smoke
# test, < 3 minutes).
set -euo pipefail

if [ "${1:-}" = "--quick" ]; then
    ROUNDS=${ROUNDS:-1}
    DURATION=${DURATION:-2}
    IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-500}
    IDLE_ALLOCATIONS=${IDLE_ALLOCATIONS:-200}
    shift
elif [ -n "${1:-}" ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
WRK_THREADS=${WRK_THREADS:-1}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-2000}
BASE_PORT=${BASE_PORT:-19100}
TURN_ALLOCATIONS=${TURN_ALLOCATIONS:-50}
TURN_RATE=${TURN_RATE:-20000}
IDLE_ALLOCATIONS=${IDLE_ALLOCATIONS:-1000}
TURN_RELAY_PORTICO=${TURN_RELAY_PORTICO:-40000-44999}
TURN_RELAY_COTURN=${TURN_RELAY_COTURN:-45000-49999}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

need() { command -v "$1" >/dev/null || { echo "compare.sh: '$1' not found (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need haproxy haproxy
need openssl openssl
need taskset util-linux
need ss iproute2
need curl curl
need python3 python3
# coturn is optional: without it the TURN rows show portico alone.
HAVE_COTURN=$(command -v turnserver >/dev/null && echo yes || true)

if [ -z "${PORTICO:-}" ]; then
    cargo build --release -p portico-dataplane -p portico-bench
    PORTICO=$ROOT/target/release/portico
    PORTICO_FROM="built from this tree"
else
    cargo build --release -p portico-bench
    PORTICO_FROM="given as PORTICO=${PORTICO}${PORTICO_SOURCE:+ ($PORTICO_SOURCE)}"
fi
BENCH=$ROOT/target/release/portico-bench
OUT=${OUT:-$(mktemp -d -t portico-compare.XXXXXX)}
mkdir -p "$OUT"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports.
P=$BASE_PORT
T_HTTP=$((P + 1)) T_TLS=$((P + 2)) T_UPGRADE=$((P + 3)) T_SIP=$((P + 4)) T_LDAP=$((P + 5))
PO_HTTP=$((P + 10)) PO_HTTPS=$((P + 11)) PO_SIP=$((P + 12)) PO_LDAP=$((P + 13))
PR_HTTPS=$((P + 21))
HA_HTTP=$((P + 30)) HA_HTTPS_EC=$((P + 31)) HA_HTTPS_RSA=$((P + 32)) HA_SIP=$((P + 33)) HA_LDAP=$((P + 34))
# H.323: the echo target, portico's h323 listener, HAProxy's TCP relay.
T_H323=$((P + 6)) PO_H323=$((P + 14)) HA_H323=$((P + 35))
ALL_PORTS=($T_HTTP $T_TLS $T_UPGRADE $T_SIP $T_LDAP $PO_HTTP $PO_HTTPS $PO_SIP $PO_LDAP $PR_HTTPS
    $HA_HTTP $HA_HTTPS_EC $HA_HTTPS_RSA $HA_SIP $HA_LDAP)
ALL_PORTS+=($T_H323 $PO_H323 $HA_H323)
# A portico of its own for idle tunnels in a fresh process (HTTP only).
PU_HTTP=$((P + 18))
ALL_PORTS+=($PU_HTTP)
# TURN (UDP): the echo peer, portico's TURN server (and its HTTP port, which
# wait_listening watches), coturn (UDP and TCP).
T_TURN_PEER=$((P + 7)) PT_TURN=$((P + 16)) PT_HTTP=$((P + 17)) CO_TURN=$((P + 36))
ALL_PORTS+=($PT_HTTP $CO_TURN)
for port in "${ALL_PORTS[@]}"; do
    [ -z "$(ss -Hltn "sport = :$port")" ] || { echo "compare.sh: port $port is in use (set BASE_PORT)" >&2; exit 1; }
done
for port in $T_TURN_PEER $PT_TURN $CO_TURN; do
    [ -z "$(ss -Huln "sport = :$port")" ] || { echo "compare.sh: UDP port $port is in use (set BASE_PORT)" >&2; exit 1; }
done

HOST=hq.bench.test
APPS=apps.bench.test
SIPDOM=bench.example
PATH_REQ=/PBX0/APPS/index.htm

wait_listening() { # port, name, pid, log
    for _ in $(seq 1 100); do
        [ -n "$(ss -Hltn "sport = :$1")" ] && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    echo "compare.sh: $2 is not listening on port $1; its output:" >&2
    cat "$4" >&2
    exit 1
}

start() { # name, port, cpu, command...
    local name=$1 port=$2 cpu=$3
    shift 3
    echo "+ taskset -c $cpu $*" >>"$OUT/commands.txt"
    taskset -c "$cpu" "$@" >"$OUT/$name.log" 2>&1 &
    PIDS+=($!)
    wait_listening "$port" "$name" "${PIDS[-1]}" "$OUT/$name.log"
}

# --- certificates: ECDSA P-256 and RSA-2048, both for the benchmark's host names.
SAN="subjectAltName=DNS:$HOST,DNS:$APPS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
    -subj "/CN=$HOST" -addext "$SAN" -keyout "$OUT/ecdsa.key" -out "$OUT/ecdsa.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 7 \
    -subj "/CN=$HOST" -addext "$SAN" -keyout "$OUT/rsa.key" -out "$OUT/rsa.pem" 2>/dev/null
cat "$OUT/ecdsa.pem" "$OUT/ecdsa.key" >"$OUT/ecdsa.haproxy.pem"
cat "$OUT/rsa.pem" "$OUT/rsa.key" >"$OUT/rsa.haproxy.pem"

# --- targets, CPU 1.
: >"$OUT/commands.txt"
start target-http "$T_HTTP" 1 "$BENCH" target http --listen "127.0.0.1:$T_HTTP" --name target --cpu 1
start target-tls "$T_TLS" 1 "$BENCH" target http --listen "127.0.0.1:$T_TLS" --name target-tls --cpu 1 \
    --tls-cert "$OUT/ecdsa.pem" --tls-key "$OUT/ecdsa.key"
start target-upgrade "$T_UPGRADE" 1 "$BENCH" target upgrade --listen "127.0.0.1:$T_UPGRADE" --cpu 1
start target-sip "$T_SIP" 1 "$BENCH" target sip --listen "127.0.0.1:$T_SIP" --cpu 1
start target-ldap "$T_LDAP" 1 "$BENCH" target ldap --listen "127.0.0.1:$T_LDAP" --cpu 1
echo "+ taskset -c 1 $BENCH target turn-peer --listen 127.0.0.1:$T_TURN_PEER --cpu 1" >>"$OUT/commands.txt"
taskset -c 1 "$BENCH" target turn-peer --listen "127.0.0.1:$T_TURN_PEER" --cpu 1 >"$OUT/target-turn-peer.log" 2>&1 &
PIDS+=($!)
start target-h323 "$T_H323" 1 "$BENCH" target echo --listen "127.0.0.1:$T_H323" --cpu 1

# --- the rules, once for portico and once for HAProxy.
# (host, path, target tcp port, target tls port); path "" = every path.
RULES=(
    "$HOST /PBX0/APPCLIENT/appclient.htm $T_HTTP $T_TLS"
    "$HOST /PBX0/APPS $T_HTTP $T_TLS"
    "$HOST /PBX0/session $T_HTTP $T_TLS"
    "$HOST /PBX0/user.soap $T_HTTP $T_TLS"
    "$HOST /PBX0/ADMIN $T_HTTP $T_TLS"
    "$HOST /ws $T_UPGRADE $T_TLS"
    "$APPS \"\" $T_HTTP $T_TLS"
)

portico_config() { # file, https port, cert, key, [with plain listeners]
    {
        cat <<EOF
[proxy]
ipv4 = true
ipv6 = false
log_forwarded = false
log_rejected = true
blacklist_expiration_min = 0      # never blacklist: the benchmark's source is loopback

[proxy.listen]
bind = ["127.0.0.1"]
https = $2
EOF
        if [ -n "${5:-}" ]; then
            printf 'http = %s\nsip = %s\nldap = %s\n' "$PO_HTTP" "$PO_SIP" "$PO_LDAP"
            printf 'h323 = %s\n' "$PO_H323"
        fi
        printf '\n[tls]\ncertificate = "%s"\nprivate_key = "%s"\n' "$3" "$4"
        local h last=""
        for r in "${RULES[@]}"; do
            read -r h path tcp tls <<<"$r"
            if [ "$h" != "$last" ]; then
                [ -n "$last" ] && echo "]"
                printf '\n[[host]]\nname = "%s"\nhttp = [\n' "$h"
                last=$h
            fi
            printf '  { path = %s, target = "127.0.0.1", tcp = %s, tls = %s },\n' \
                "$( [ "$path" = '""' ] && echo '""' || echo "\"$path\"")" "$tcp" "$tls"
        done
        echo "]"
        cat <<EOF

[[host]]
name = "$SIPDOM"
sip = { target = "127.0.0.1", tcp = $T_SIP }
ldap = { target = "127.0.0.1", tcp = $T_LDAP }
EOF
        # H.323: the gatekeeper keys of the seed's hosts, which `portico-bench h323`'s
        # default vectors carry; every one to the echo target (as in the seed,
        # check_certificate: a client without a certificate goes to the tcp port).
        for h in dvl-ckl2.net dvl-ckl2.net/hq dvl-ckl2.net/branch-b; do
            printf '\n[[host]]\nname = "%s"\nh323 = { target = "127.0.0.1", tcp = %s, check_certificate = true }\n' \
                "$h" "$T_H323"
        done
    } >"$1"
}

haproxy_routes() { # backend suffix (http or tls)
    local i=0 h path
    for r in "${RULES[@]}"; do
        read -r h path _ _ <<<"$r"
        i=$((i + 1))
        local be=be_${1}_target
        case "$path" in */ws) be=be_${1}_upgrade ;; esac
        if [ "$path" = '""' ]; then
            echo "    use_backend $be if { hdr(host),field(1,:) -i $h }"
        else
            echo "    use_backend $be if { hdr(host),field(1,:) -i $h } { path_beg $path }"
        fi
    done
    echo "    default_backend be_deny"
}

haproxy_config() {
    cat <<EOF
global
    nbthread 1
    maxconn 5000
    tune.ssl.default-dh-param 2048

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 300s
    timeout http-keep-alive 30s
    option splice-auto
    http-reuse always

frontend fe_http
    bind 127.0.0.1:$HA_HTTP
    option forwardfor
$(haproxy_routes http)

frontend fe_https_ecdsa
    bind 127.0.0.1:$HA_HTTPS_EC ssl crt $OUT/ecdsa.haproxy.pem alpn http/1.1
    option forwardfor
$(haproxy_routes tls)

frontend fe_https_rsa
    bind 127.0.0.1:$HA_HTTPS_RSA ssl crt $OUT/rsa.haproxy.pem alpn http/1.1
    option forwardfor
$(haproxy_routes tls)

backend be_deny
    http-request deny deny_status 403
backend be_http_target
    server t 127.0.0.1:$T_HTTP
backend be_http_upgrade
    server t 127.0.0.1:$T_UPGRADE
backend be_tls_target
    server t 127.0.0.1:$T_TLS ssl verify none
backend be_tls_upgrade
    server t 127.0.0.1:$T_TLS ssl verify none

# SIP and LDAP: a plain TCP relay (no routing on From / bind domain).
listen sip
    mode tcp
    bind 127.0.0.1:$HA_SIP
    server t 127.0.0.1:$T_SIP
listen ldap
    mode tcp
    bind 127.0.0.1:$HA_LDAP
    server t 127.0.0.1:$T_LDAP
# H.323: a plain TCP relay (no gatekeeper-id routing).
listen h323
    mode tcp
    bind 127.0.0.1:$HA_H323
    server t 127.0.0.1:$T_H323
EOF
}

portico_config "$OUT/portico.toml" "$PO_HTTPS" "$OUT/ecdsa.pem" "$OUT/ecdsa.key" plain
portico_config "$OUT/portico-rsa.toml" "$PR_HTTPS" "$OUT/rsa.pem" "$OUT/rsa.key"
haproxy_config >"$OUT/haproxy.cfg"
haproxy -c -q -f "$OUT/haproxy.cfg"

# --- the proxies, CPU 0.
start portico "$PO_HTTP" 0 "$PORTICO" run --config "$OUT/portico.toml" --shards 1
PORTICO_PID=${PIDS[-1]}
start portico-rsa "$PR_HTTPS" 0 "$PORTICO" run --config "$OUT/portico-rsa.toml" --shards 1
PORTICO_RSA_PID=${PIDS[-1]}
start haproxy "$HA_HTTP" 0 haproxy -db -f "$OUT/haproxy.cfg"
HAPROXY_PID=${PIDS[-1]}
# The same rules, HTTP only, for idle tunnels in a process that has served nothing.
sed -e "s/^http = $PO_HTTP\$/http = $PU_HTTP/" -e '/^\(https\|sip\|ldap\|h323\) = /d' \
    "$OUT/portico.toml" >"$OUT/portico-tunnel.toml"
start portico-tunnel "$PU_HTTP" 0 "$PORTICO" run --config "$OUT/portico-tunnel.toml" --shards 1
PORTICO_TUNNEL_PID=${PIDS[-1]}

# TURN: portico with only [turn], and coturn; the same users (bench0..bench31 for the
# load and the idle allocations, as portico allows 64 allocations per user and shard;
# turn342823 for the check).
TURN_USERS=32
turn_users_toml='{ name = "turn342823", password = "ip411" }'
COTURN_USERS=(--user=turn342823:ip411)
for i in $(seq 0 $((TURN_USERS - 1))); do
    turn_users_toml+=", { name = \"bench$i\", password = \"ip411\" }"
    COTURN_USERS+=("--user=bench$i:ip411")
done
cat >"$OUT/portico-turn.toml" <<EOF
[proxy]
ipv6 = false
blacklist_expiration_min = 0
[proxy.listen]
bind = ["127.0.0.1"]
http = $PT_HTTP
[turn]
listen_udp = $PT_TURN
realm = "dvl-ckl2.net"
relay_address = "127.0.0.1"
relay_ports = "$TURN_RELAY_PORTICO"
allowed_peers = ["127.0.0.0/8"]
allow_loopback_peers = true
users = [ $turn_users_toml ]
EOF
start portico-turn "$PT_HTTP" 0 "$PORTICO" run --config "$OUT/portico-turn.toml" --shards 1
PORTICO_TURN_PID=${PIDS[-1]}
TURN_SYSTEMS=(portico-turn)
if [ -n "$HAVE_COTURN" ]; then
    start coturn "$CO_TURN" 0 turnserver -n --no-cli --no-tls --no-dtls --listening-ip=127.0.0.1 \
        --listening-port="$CO_TURN" --relay-ip=127.0.0.1 --min-port="${TURN_RELAY_COTURN%-*}" \
        --max-port="${TURN_RELAY_COTURN#*-}" --lt-cred-mech "${COTURN_USERS[@]}" --realm=dvl-ckl2.net \
        --allow-loopback-peers --relay-threads=1 --log-file=stdout
    COTURN_PID=${PIDS[-1]}
    TURN_SYSTEMS+=(coturn)
fi
turn_port() { case $1 in portico-turn) echo "$PT_TURN" ;; coturn) echo "$CO_TURN" ;; esac; }
turn_pid() { case $1 in portico-turn) echo "$PORTICO_TURN_PID" ;; coturn) echo "$COTURN_PID" ;; esac; }
TURN_ARGS=(--peer "127.0.0.1:$T_TURN_PEER" --password ip411)
TURN_LOAD=(--user bench --users "$TURN_USERS" --source 127.0.0.2 --sources 4 --allocations "$TURN_ALLOCATIONS")

# Every path answers 200 before anything is measured.
check() { # url, name, [host header]
    local code
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 ${3:+-H "Host: $3"} "$1" || true)
    if [ "$code" != 200 ]; then
        echo "compare.sh: $2 answered '$code' instead of 200 for $1" >&2
        tail -20 "$OUT"/portico*.log "$OUT/haproxy.log" >&2
        exit 1
    fi
}
check "http://127.0.0.1:$T_HTTP$PATH_REQ" "the target"
check "https://127.0.0.1:$T_TLS$PATH_REQ" "the TLS target"
check "http://127.0.0.1:$PO_HTTP$PATH_REQ" "portico" "$HOST"
for pair in "$PO_HTTPS:portico-https" "$PR_HTTPS:portico-rsa" "$HA_HTTPS_EC:haproxy-https-ecdsa" "$HA_HTTPS_RSA:haproxy-https-rsa"; do
    port=${pair%%:*}
    code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 5 --resolve "$HOST:$port:127.0.0.1" \
        "https://$HOST:$port$PATH_REQ" || true)
    [ "$code" = 200 ] || { echo "compare.sh: ${pair#*:} answered '$code'" >&2; exit 1; }
done
check "http://127.0.0.1:$HA_HTTP$PATH_REQ" "haproxy" "$HOST"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $HOST" "http://127.0.0.1:$PO_HTTP/secret" || true)
[ "$code" = 403 ] || { echo "compare.sh: portico answered '$code' instead of 403 for /secret" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: $HOST" "http://127.0.0.1:$HA_HTTP/secret" || true)
[ "$code" = 403 ] || { echo "compare.sh: haproxy answered '$code' instead of 403 for /secret" >&2; exit 1; }
# H.323: a short burst of the default vectors through each path, every one echoed whole.
for pair in "$PO_H323:portico" "$HA_H323:haproxy" "$T_H323:the-echo-target"; do
    port=${pair%%:*}
    timeout 20 "$BENCH" h323 --connect "127.0.0.1:$port" --connections 1 --duration 0.3 --json \
        >"$OUT/h323-check.json" 2>&1 || true
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["requests"] > 0 and r["error_total"] == 0 else 1)' \
        "$OUT/h323-check.json" 2>/dev/null || {
        echo "compare.sh: H.323 through ${pair#*:} (port $port) failed:" >&2
        cat "$OUT/h323-check.json" >&2
        tail -20 "$OUT/portico.log" >&2
        exit 1
    }
done

# TURN: a short burst relayed through each server, every datagram back.
for s in "${TURN_SYSTEMS[@]}"; do
    timeout 30 "$BENCH" turn --server "127.0.0.1:$(turn_port "$s")" "${TURN_ARGS[@]}" --user turn342823 \
        --allocations 2 --rate 200 --duration 0.3 --json >"$OUT/turn-check.json" 2>&1 || true
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["received"] > 0 and r["lost"] == 0 and r["error_total"] == 0 else 1)' \
        "$OUT/turn-check.json" 2>/dev/null || {
        echo "compare.sh: TURN through $s failed:" >&2
        cat "$OUT/turn-check.json" >&2
        tail -20 "$OUT/$s.log" >&2
        exit 1
    }
done

# --- what ran where, and with what.
rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo " (work tree has uncommitted changes)" || true)
{
    echo "=== compare.sh — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine:   $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
    echo "load:      $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15-min load average at start; the machine is shared)"
    echo "portico:   git $rev$dirty; binary $PORTICO_FROM"
    echo "haproxy:   $(haproxy -v | head -1)"
    if [ -n "$HAVE_COTURN" ]; then
        echo "coturn:    $(turnserver --version 2>&1 | head -1)"
    else
        echo "coturn:    not installed: the TURN rows show portico alone"
    fi
    echo "wrk:       $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
    echo "rustc:     $(rustc -V)"
    echo "placement: CPU 0: portico (1 shard) / HAProxy (nbthread 1) / coturn (1 relay thread); CPU 1: load generator and targets"
    echo "settings:  rounds $ROUNDS, $DURATION s per run, $CONNECTIONS connections, wrk -t$WRK_THREADS; results in $OUT"
    echo
} | tee "$OUT/header.txt"

# --- helpers for one measured run.
RUN_N=0
bench() { # name, system, command... (portico-bench --json); appends the JSON to the result file
    local name=$1 system=$2
    shift 2
    RUN_N=$((RUN_N + 1))
    echo "+ taskset -c 1 $*" >>"$OUT/commands.txt"
    local before after
    before=$(cpu_ticks "$system")
    if ! timeout $((DURATION + 40)) taskset -c 1 "$@" --json >"$OUT/run.json" 2>"$OUT/run.err"; then
        echo "compare.sh: $name against $system failed:" >&2
        cat "$OUT/run.err" >&2
        exit 1
    fi
    after=$(cpu_ticks "$system")
    python3 - "$OUT/run.json" "$system" "$name" "$before" "$after" "$(getconf CLK_TCK)" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r["system"], r["name"] = sys.argv[2], sys.argv[3]
b, a, hz = sys.argv[4], sys.argv[5], int(sys.argv[6])
r["proxy_cpu_s"] = (int(a) - int(b)) / hz if b and a else None
print(json.dumps(r))
EOF
    printf '  %-22s %-8s %s\n' "$name" "$system" "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(("%d/%d allocations, %.0f bytes/alloc (VmRSS %d -> %d KiB)" % (r["allocations_ok"], r["connections"], r["rss_per_allocation_bytes"] or 0, r["rss_before_kib"] or 0, r["rss_after_kib"] or 0)) if r.get("idle") is True else ("%.0f dgram/s  loss %.3f%%  p50 %.0f µs  p99 %.0f µs  errors %d" % (r["rate"], r["loss_pct"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["error_total"])) if "loss_pct" in r else ("%.1f MB/s up, %.1f MB/s down" % (r["up_mb_s"], r["down_mb_s"])) if "up_mb_s" in r else ("%d/%d open, %.0f bytes/conn (VmRSS %d -> %d KiB)" % (r["connections_open"], r["connections_requested"], r["rss_per_connection_bytes"], r["rss_before_kib"], r["rss_after_kib"])) if "rss_per_connection_bytes" in r else ("%.0f /s  p50 %.0f µs  p99 %.0f µs  errors %d" % (r["rate"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["error_total"])))' "$OUT/run.json")"
}

run_wrk() { # system, url
    local system=$1 url=$2
    RUN_N=$((RUN_N + 1))
    local cmd=(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $HOST" "$url")
    echo "+ taskset -c 1 ${cmd[*]}" >>"$OUT/commands.txt"
    timeout $((DURATION + 30)) taskset -c 1 "${cmd[@]}" >"$OUT/wrk.out" 2>&1 || { cat "$OUT/wrk.out" >&2; exit 1; }
    python3 - "$OUT/wrk.out" "$system" >>"$OUT/results.jsonl" <<'EOF'
import json, re, sys
t = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def us(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
lat = {p: us(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", t, re.M)}
err = sum(int(x) for x in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)\s*:?\s*(\d+)", t.split("Requests/sec")[0]))
print(json.dumps({"name": "http-ka-wrk", "system": sys.argv[2], "rate": rate,
                  "latency_us": {"p50": lat.get("50", 0), "p99": lat.get("99", 0)}, "error_total": err}))
EOF
    printf '  %-22s %-8s %s\n' "http-ka-wrk" "$system" "$(tail -1 "$OUT/results.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f /s  p50 %.0f µs  p99 %.0f µs  errors %d" % (r["rate"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["error_total"]))')"
}

cpu_ticks() { # system -> utime+stime of the proxy (empty for direct)
    local pid
    case "$1" in
        portico) pid=$PORTICO_PID ;;
        portico-rsa) pid=$PORTICO_RSA_PID ;;
        portico-tunnel) pid=$PORTICO_TUNNEL_PID ;;
        portico-turn) pid=$PORTICO_TURN_PID ;;
        coturn) pid=$COTURN_PID ;;
        haproxy) pid=$HAPROXY_PID ;;
        *) return 0 ;;
    esac
    awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

# Rotate a list of systems by the round number.
rotate() { # round, systems...
    local r=$1
    shift
    local a=("$@") n=$#
    local i
    for i in $(seq 0 $((n - 1))); do
        echo "${a[$(((i + r) % n))]}"
    done
}

: >"$OUT/results.jsonl"
D=$DURATION
C=$CONNECTIONS

# --- idle memory first, on fresh processes (a warm allocator would reuse freed memory).
echo "--- idle: $IDLE_CONNECTIONS kept-alive connections, VmRSS growth of the proxy"
bench idle-http portico "$BENCH" idle --url "http://$HOST$PATH_REQ" --connect "127.0.0.1:$PO_HTTP" \
    --pid "$PORTICO_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
# Idle tunnels (HTTP Upgrade to the upgrade target, then nothing): measured after the
# HTTP idle run in the same process (its connections closed; a warm allocator may
# reuse that memory, so this is a lower bound), for both proxies.
bench idle-tunnel portico "$BENCH" idle --upgrade --url "http://$HOST/ws" --connect "127.0.0.1:$PO_HTTP" \
    --pid "$PORTICO_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
bench idle-tunnel-fresh portico-tunnel "$BENCH" idle --upgrade --url "http://$HOST/ws" --connect "127.0.0.1:$PU_HTTP" \
    --pid "$PORTICO_TUNNEL_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
bench idle-https portico-rsa "$BENCH" idle --url "https://$HOST$PATH_REQ" --connect "127.0.0.1:$PR_HTTPS" \
    --pid "$PORTICO_RSA_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
bench idle-http haproxy "$BENCH" idle --url "http://$HOST$PATH_REQ" --connect "127.0.0.1:$HA_HTTP" \
    --pid "$HAPROXY_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
bench idle-https haproxy "$BENCH" idle --url "https://$HOST$PATH_REQ" --connect "127.0.0.1:$HA_HTTPS_RSA" \
    --pid "$HAPROXY_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
bench idle-tunnel haproxy "$BENCH" idle --upgrade --url "http://$HOST/ws" --connect "127.0.0.1:$HA_HTTP" \
    --pid "$HAPROXY_PID" --connections "$IDLE_CONNECTIONS" --cpu 1
echo "--- idle: $IDLE_ALLOCATIONS TURN allocations with a channel each, VmRSS growth of the server"
for s in "${TURN_SYSTEMS[@]}"; do
    # 20 source addresses: portico allows a burst of 64 401 challenges per client IP.
    bench idle-turn "$s" "$BENCH" turn --server "127.0.0.1:$(turn_port "$s")" "${TURN_ARGS[@]}" --idle \
        --pid "$(turn_pid "$s")" --allocations "$IDLE_ALLOCATIONS" --user bench --users "$TURN_USERS" \
        --source 127.0.0.2 --sources 20 --cpu 1
done
sleep 1

for round in $(seq 1 "$ROUNDS"); do
    echo "--- round $round/$ROUNDS"
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_HTTP ;; haproxy) port=$HA_HTTP ;; direct) port=$T_HTTP ;; esac
        run_wrk "$s" "http://127.0.0.1:$port$PATH_REQ"
    done
    for mode in keepalive new-connection; do
        name=http-ka
        [ "$mode" = new-connection ] && name=http-newconn
        for s in $(rotate "$round" portico haproxy direct); do
            case $s in portico) port=$PO_HTTP ;; haproxy) port=$HA_HTTP ;; direct) port=$T_HTTP ;; esac
            bench "$name" "$s" "$BENCH" http --url "http://$HOST$PATH_REQ" --connect "127.0.0.1:$port" \
                --mode "$mode" --connections "$C" --duration "$D" --cpu 1
        done
    done
    # Added latency: every system at the same fixed rate, half of portico's keep-alive
    # maximum measured just above; p99 through a proxy minus p99 direct.
    HALF_RATE=$(python3 -c 'import json,sys
rs=[json.loads(l) for l in open(sys.argv[1])]
r=[x["rate"] for x in rs if x["name"]=="http-ka" and x["system"]=="portico"][-1]
print(max(100, int(r / 2)))' "$OUT/results.jsonl")
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_HTTP ;; haproxy) port=$HA_HTTP ;; direct) port=$T_HTTP ;; esac
        bench http-fixed "$s" "$BENCH" http --url "http://$HOST$PATH_REQ" --connect "127.0.0.1:$port" \
            --mode keepalive --rate "$HALF_RATE" --connections "$C" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_HTTPS ;; haproxy) port=$HA_HTTPS_EC ;; direct) port=$T_TLS ;; esac
        bench https-hs-ecdsa "$s" "$BENCH" https --url "https://$HOST$PATH_REQ" --connect "127.0.0.1:$port" \
            --mode new-connection --connections "$C" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" portico-rsa haproxy); do
        case $s in portico-rsa) port=$PR_HTTPS ;; haproxy) port=$HA_HTTPS_RSA ;; esac
        bench https-hs-rsa "$s" "$BENCH" https --url "https://$HOST$PATH_REQ" --connect "127.0.0.1:$port" \
            --mode new-connection --connections "$C" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_HTTPS ;; haproxy) port=$HA_HTTPS_EC ;; direct) port=$T_TLS ;; esac
        bench https-ka "$s" "$BENCH" https --url "https://$HOST$PATH_REQ" --connect "127.0.0.1:$port" \
            --mode keepalive --connections "$C" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_HTTP ;; haproxy) port=$HA_HTTP ;; direct) port=$T_UPGRADE ;; esac
        bench tunnel "$s" "$BENCH" tunnel --connect "127.0.0.1:$port" --upgrade-host "$HOST" \
            --upgrade-path /ws --connections 4 --duration "$D" --cpu 1
    done
    for mode in new-connection persistent; do
        name=sip-newconn
        [ "$mode" = persistent ] && name=sip-persistent
        for s in $(rotate "$round" portico haproxy direct); do
            case $s in portico) port=$PO_SIP ;; haproxy) port=$HA_SIP ;; direct) port=$T_SIP ;; esac
            bench "$name" "$s" "$BENCH" sip --connect "127.0.0.1:$port" --domain "$SIPDOM" \
                --mode "$mode" --connections "$C" --duration "$D" --cpu 1
        done
    done
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_LDAP ;; haproxy) port=$HA_LDAP ;; direct) port=$T_LDAP ;; esac
        bench ldap "$s" "$BENCH" ldap --connect "127.0.0.1:$port" --domain "$SIPDOM" \
            --connections "$C" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" portico haproxy direct); do
        case $s in portico) port=$PO_H323 ;; haproxy) port=$HA_H323 ;; direct) port=$T_H323 ;; esac
        bench h323-newconn "$s" "$BENCH" h323 --connect "127.0.0.1:$port" \
            --connections "$C" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" "${TURN_SYSTEMS[@]}"); do
        bench turn-max "$s" "$BENCH" turn --server "127.0.0.1:$(turn_port "$s")" "${TURN_ARGS[@]}" \
            "${TURN_LOAD[@]}" --duration "$D" --cpu 1
    done
    for s in $(rotate "$round" "${TURN_SYSTEMS[@]}"); do
        bench turn-fixed "$s" "$BENCH" turn --server "127.0.0.1:$(turn_port "$s")" "${TURN_ARGS[@]}" \
            "${TURN_LOAD[@]}" --rate "$TURN_RATE" --duration "$D" --cpu 1
    done
done

echo
echo "=== commands (round 1; later rounds repeat them in rotated order)"
awk '!seen[$0]++' "$OUT/commands.txt"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$OUT/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def get(name, system, f):
    return [f(r) for r in rows if r["name"] == name and r["system"] == system]
SCEN = [
    ("http-ka-wrk", "HTTP keep-alive (wrk)", "req/s", lambda r: r["rate"]),
    ("http-ka", "HTTP keep-alive (portico-bench)", "req/s", lambda r: r["rate"]),
    ("http-newconn", "HTTP new connection", "req/s", lambda r: r["rate"]),
    ("http-fixed", "HTTP keep-alive p99 at ½ portico max", "µs", lambda r: r["latency_us"]["p99"]),
    ("https-hs-ecdsa", "TLS full handshake, ECDSA P-256", "hs/s", lambda r: r["rate"]),
    ("https-hs-rsa", "TLS full handshake, RSA-2048", "hs/s", lambda r: r["rate"]),
    ("https-ka", "HTTPS keep-alive (ECDSA)", "req/s", lambda r: r["rate"]),
    ("tunnel", "tunnel up (client->target)", "MB/s", lambda r: r["up_mb_s"]),
    ("tunnel", "tunnel down (echo)", "MB/s", lambda r: r["down_mb_s"]),
    ("tunnel", "tunnel proxy CPU per GiB relayed", "CPU s/GiB",
     lambda r: (r["proxy_cpu_s"] / ((r["sent_bytes"] + r["received_bytes"]) / 2**30))
     if r.get("proxy_cpu_s") is not None and r["sent_bytes"] else None),
    ("sip-newconn", "SIP REGISTER, new connection", "tx/s", lambda r: r["rate"]),
    ("sip-persistent", "SIP REGISTER, persistent conn.", "tx/s", lambda r: r["rate"]),
    ("ldap", "LDAP bind+search, new conn.", "ops/s", lambda r: r["rate"]),
    ("h323-newconn", "H.323 first-message routing (new connection)", "conn/s", lambda r: r["rate"]),
    ("turn-max", "TURN relayed dgram/s, max (vs coturn)", "dgram/s", lambda r: r["rate"]),
    ("turn-fixed", "TURN RTT p50, fixed rate (vs coturn)", "µs", lambda r: r["latency_us"]["p50"]),
    ("turn-fixed", "TURN RTT p99, fixed rate (vs coturn)", "µs", lambda r: r["latency_us"]["p99"]),
    ("idle-http", "idle HTTP keep-alive conn.", "B/conn", lambda r: r["rss_per_connection_bytes"]),
    ("idle-http", "  the same, 2nd half only †", "B/conn", lambda r: r.get("rss_marginal_per_connection_bytes")),
    ("idle-https", "idle HTTPS keep-alive conn.", "B/conn", lambda r: r["rss_per_connection_bytes"]),
    ("idle-https", "  the same, 2nd half only †", "B/conn", lambda r: r.get("rss_marginal_per_connection_bytes")),
    ("idle-tunnel-fresh", "idle plain tunnel, fresh process", "B/conn", lambda r: r["rss_per_connection_bytes"]),
    ("idle-tunnel-fresh", "  the same, 2nd half only †", "B/conn", lambda r: r.get("rss_marginal_per_connection_bytes")),
    ("idle-tunnel", "idle plain tunnel, after HTTP idle", "B/conn", lambda r: r["rss_per_connection_bytes"]),
    ("idle-turn", "idle TURN allocation (vs coturn)", "B/alloc", lambda r: r["rss_per_allocation_bytes"]),
    ("idle-turn", "  the same, 2nd half only †", "B/alloc", lambda r: r.get("rss_marginal_per_allocation_bytes")),
]
TURN = ("turn-max", "turn-fixed", "idle-turn")
def fmt(v, unit):
    if v is None:
        return "—"
    return f"{v:.2f}" if unit == "CPU s/GiB" else f"{v:,.0f}"
def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "—"
print("=== medians of %s round(s); ratios of medians" % max(1, len(get("http-ka", "portico", lambda r: 1))))
# The scenario column fits the longest label (and its " *").
LW = max([33] + [len(label) + 2 for _, label, _, _ in SCEN])
hdr = f"| {'scenario':<{LW}} | {'unit':<9} | {'portico':>9} | {'HAProxy':>9} | {'direct':>9} | {'p÷HAProxy':>9} | {'p÷direct':>8} | {'portico p99 µs':>14} |"
print(hdr)
print("|" + "|".join("-" * (len(c)) for c in hdr.split("|")[1:-1]) + "|")
for name, label, unit, f in SCEN:
    psys = "portico-rsa" if name in ("https-hs-rsa", "idle-https") else "portico-turn" if name in TURN \
        else "portico-tunnel" if name == "idle-tunnel-fresh" else "portico"
    p = med(get(name, psys, f))
    h = med(get(name, "coturn" if name in TURN else "haproxy", f))
    d = med(get(name, "direct", f))
    p99 = med(get(name, psys, lambda r: r.get("latency_us", {}).get("p99")))
    if name in ("sip-newconn", "sip-persistent", "ldap", "h323-newconn"):
        label += " *"
    print(f"| {label:<{LW}} | {unit:<9} | {fmt(p, unit):>9} | {fmt(h, unit):>9} | {fmt(d, unit):>9} | "
          f"{ratio(p, h):>9} | {ratio(p, d):>8} | {fmt(p99, '') if p99 else '—':>14} |")
print()
print("* SIP/LDAP/H.323 HAProxy column: TCP-mode relay without From / bind-domain / gatekeeper-id routing.")
print("  idle HTTPS: portico-rsa (fresh process, RSA cert) vs HAProxy's RSA frontend (measured after its HTTP idle run).")
print("  idle tunnel, fresh process: a portico of its own (HTTP only) that has served nothing before.")
print("  † VmRSS growth per connection/allocation over the second half of the opened ones alone (VmRSS read at")
print("    half, after a settle): what one more costs, without what the first ones paid once for the process.")
print("  idle tunnel, after HTTP idle: both proxies, after their HTTP idle run in the same process (a lower bound).")
def turn_note(name, system):
    loss = med(get(name, system, lambda r: r["loss_pct"]))
    return "—" if loss is None else "%.3f %%" % loss
rate = med([r.get("target_rate") for r in rows if r["name"] == "turn-fixed"])
print("  TURN rows: the HAProxy column is coturn (turnserver --relay-threads=1), the p÷HAProxy column p÷coturn; "
      "portico-bench turn, channels, 172 B payloads, fixed rate %s dgram/s." % ("%.0f" % rate if rate else "—"))
print("  TURN loss (median): max rate portico %s, coturn %s; fixed rate portico %s, coturn %s."
      % (turn_note("turn-max", "portico-turn"), turn_note("turn-max", "coturn"),
         turn_note("turn-fixed", "portico-turn"), turn_note("turn-fixed", "coturn")))
def p99(system):
    return med(get("http-fixed", system, lambda r: r["latency_us"]["p99"]))
fixed_rate = med(get("http-fixed", "direct", lambda r: r["rate"]))
if p99("direct") is not None:
    added = lambda s: "—" if p99(s) is None else "%.0f µs" % (p99(s) - p99("direct"))
    print("  Added p99 latency at %s req/s (half of portico's keep-alive maximum; p99 minus the direct p99): "
          "portico %s, HAProxy %s." % ("%.0f" % fixed_rate if fixed_rate else "—", added("portico"), added("haproxy")))
errs = [(r["name"], r["system"], r["error_total"], r.get("errors")) for r in rows if r.get("error_total")]
for e in errs:
    print("ERRORS: %s %s: %d %s" % e)
if not errs:
    print("errors: none in any run")
EOF
