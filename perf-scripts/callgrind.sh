#!/usr/bin/env bash
# callgrind.sh — instructions per call of every sniffer, counted by valgrind's
# callgrind (stable on a noisy shared machine, unlike wall-clock time).
#
# For each NAME of `icount list` (bench/examples/icount.rs) it runs the example under
# `valgrind --tool=callgrind` with N and with 2N iterations and prints
# (Ir(2N) - Ir(N)) / N: start-up, input preparation and the config parse cancel out.
# Built with the `bench` profile (lto, codegen-units = 1), like the criterion benches.
#
# Usage: perf-scripts/callgrind.sh [NAME...]     Environment: N=20000
set -euo pipefail
N=${N:-20000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 1; }

cargo build --profile bench -p portico-bench --example icount
BIN=$ROOT/target/release/examples/icount
[ -x "$BIN" ] || BIN=$ROOT/target/bench/examples/icount
WORK=$(mktemp -d -t portico-callgrind.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

ir() { # name, iterations -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$WORK/out" "$BIN" "$1" "$2" >/dev/null 2>"$WORK/err" \
        || { cat "$WORK/err" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/err"
}

echo "valgrind: $(valgrind --version); rustc: $(rustc -V); N=$N and 2N iterations"
printf '%-36s %14s\n' "sniffer" "instr/call"
names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <("$BIN" list)
for name in "${names[@]}"; do
    a=$(ir "$name" "$N")
    b=$(ir "$name" $((2 * N)))
    awk -v n="$name" -v a="$a" -v b="$b" -v k="$N" 'BEGIN { printf "%-36s %14.1f\n", n, (b - a) / k }'
done
