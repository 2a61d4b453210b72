#!/usr/bin/env bash
# flamegraph.sh — an SVG flame graph of portico under routed HTTP keep-alive load.
#
# Records with profile.sh (same placement and event choice: `cycles` if the CPU
# exposes it, else `cpu-clock`, which is what this VM offers), unless OUT already holds
# a perf.data, then folds the stacks and draws them.
#
# Folding and drawing: inferno (`cargo install inferno`: inferno-collapse-perf and
# inferno-flamegraph, Rust ports of Brendan Gregg's scripts, from crates.io). When
# they are not on PATH, the FlameGraph perl scripts (stackcollapse-perf.pl,
# flamegraph.pl) are used if installed. The script says which it used.
#
# Usage: [OUT=dir] perf-scripts/flamegraph.sh      → OUT/flamegraph.svg
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d -t portico-flame.XXXXXX)}
export OUT
if [ ! -s "$OUT/perf.data" ]; then
    "$ROOT/perf-scripts/profile.sh" >/dev/null
fi
PATH=$PATH:$HOME/.cargo/bin
if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
    COLLAPSE=(inferno-collapse-perf)
    DRAW=(inferno-flamegraph --title "portico, routed HTTP keep-alive")
    TOOL="inferno $(cargo install --list 2>/dev/null | awk '/^inferno /{print $2}' | tr -d ':' || true)"
elif command -v stackcollapse-perf.pl >/dev/null && command -v flamegraph.pl >/dev/null; then
    COLLAPSE=(stackcollapse-perf.pl)
    DRAW=(flamegraph.pl --title "portico, routed HTTP keep-alive")
    TOOL="FlameGraph perl scripts"
else
    echo "flamegraph.sh: neither inferno (cargo install inferno) nor the FlameGraph scripts are installed" >&2
    exit 1
fi
perf script -i "$OUT/perf.data" 2>/dev/null | "${COLLAPSE[@]}" >"$OUT/folded.txt"
"${DRAW[@]}" <"$OUT/folded.txt" >"$OUT/flamegraph.svg"
echo "flamegraph.sh: $OUT/flamegraph.svg (folded with ${COLLAPSE[0]}, drawn with $TOOL)"
echo "hottest frames (self samples):"
awk '{ n = $NF; $NF = ""; split($0, f, ";"); leaf = f[length(f)]; s[leaf] += n; t += n }
     END { for (k in s) printf "%6.2f%%  %s\n", 100 * s[k] / t, k }' "$OUT/folded.txt" | sort -rn | head -15
