#!/usr/bin/env bash
# Estate benchmark: TABLES (10,000) small Delta tables of two commits each, replicated and
# validated by `replicator run` (embedded: memory bus, SQLite state) three times — a first
# run into an empty target, a run with nothing changed, and a run after 1% of the tables got
# a new commit — with baselines measured in the same run: `cp -r` of the estate (for the
# first run) and a `find` walk that stats every file of source and target (for the others).
# Prints seconds, tables/s, peak RSS, ratios and how many tables were validated deeply.
# Usage: bench/estate.sh [--tables N] [--fresh] [--changed-every N] [--operation all|replication] [--no-extra-runs]
set -euo pipefail

TABLES=${TABLES:-10000}
CHANGED_EVERY=${CHANGED_EVERY:-100}   # every Nth table gets a new commit before the third run
OPERATION=${OPERATION:-all}
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-estate}
CONCURRENCY=${CONCURRENCY:-}          # cloners and reconcilers; the config's defaults when unset
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
FRESH=0
EXTRA_RUNS=1                          # also time unchanged runs clone-only and with deep_every=0 (information)
REPLICATOR_BIN=${REPLICATOR_BIN:-}    # time this binary instead of building one (an older build, say)
DURABLE=0                             # lib.sh: no trailing sync in the timings

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --tables) TABLES=$2; shift ;;
        --fresh) FRESH=1 ;;
        --changed-every) CHANGED_EVERY=$2; shift ;;
        --operation) OPERATION=$2; shift ;;
        --no-extra-runs) EXTRA_RUNS=0 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIME_BIN=$(command -v /usr/bin/time || true)
[[ -n $TIME_BIN ]] || { echo "/usr/bin/time not found (apt-get install -y time)" >&2; exit 1; }
log() { echo "== $*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator \
    -p replicator-lake --example gen_estate)
REPLICATOR=${REPLICATOR_BIN:-$CARGO_TARGET_DIR/release/replicator}
GEN=$CARGO_TARGET_DIR/release/examples/gen_estate

BASE=$BENCH_DIR/estate-$TABLES       # generated once, never modified
SRC=$BENCH_DIR/src                   # hard-linked copy of BASE that the third run's commits go to
TGT=$BENCH_DIR/target
CP_DST=$BENCH_DIR/cp-dst
mkdir -p "$BENCH_DIR"
if ((FRESH)) || [[ ! -e $BASE/.generated ]]; then
    rm -rf "$BASE"
    log "generating $TABLES tables under $BASE"
    t0=$(date +%s)
    "$GEN" "$BASE" "$TABLES" 10 >&2
    touch "$BASE/.generated"
    log "generated in $(($(date +%s) - t0)) s"
else
    log "reusing $BASE; pass --fresh to regenerate"
fi

cleanup() { rm -rf "$SRC" "$TGT" "$CP_DST" "$BENCH_DIR"/state.db* "$BENCH_DIR"/*.json "$BENCH_DIR/rss"; }
trap cleanup EXIT
cleanup
# Delta never rewrites a file, so a hard-linked copy is a private source to append to.
cp -al "$BASE" "$SRC"
rm -f "$SRC/.generated"
FILES=$(find "$SRC" -type f | wc -l)
BYTES=$(du -sb "$SRC" | cut -f1)

cat >"$BENCH_DIR/estate.yaml" <<EOF
source: { root: $SRC }
target: { root: $TGT }
state: { url: "sqlite://$BENCH_DIR/state.db" }
operation: $OPERATION
log: { level: warn }
EOF
if [[ -n $CONCURRENCY ]]; then
    echo "concurrency: { cloners: $CONCURRENCY, reconcilers: $CONCURRENCY }" >>"$BENCH_DIR/estate.yaml"
fi

py() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['summary']; print($1)" "$2"; }
# Validations of the last run by depth, from the state store (needs sqlite3).
depths() {
    command -v sqlite3 >/dev/null || { echo "n/a"; return; }
    sqlite3 "$BENCH_DIR/state.db" "SELECT
        SUM(CASE WHEN detail LIKE '%\"depth\":\"cheap\"%' THEN 1 ELSE 0 END),
        SUM(CASE WHEN detail LIKE '%\"depth\":\"cheap\"%' THEN 0 ELSE 1 END)
        FROM outcomes WHERE stage = 'reconcile' AND run_id = (SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1)" |
        awk -F'|' '{ printf "%d cheap, %d deep", $1, $2 }'
}
# run NAME WANT_FILES: time `replicator run`, check every table succeeded and the files copied.
declare -A T_OF RSS_OF DEPTH_OF
run() {
    local name=$1 want=$2
    shift 2
    timed "$BENCH_DIR/$name.json" "$REPLICATOR" run "$BENCH_DIR/estate.yaml" --json "$@"
    check "$(py "s['succeeded']" "$BENCH_DIR/$name.json")" "$TABLES" "$name: tables succeeded"
    check "$(py "s['files_copied']" "$BENCH_DIR/$name.json")" "$want" "$name: files copied"
    T_OF[$name]=$T RSS_OF[$name]=$RSS
    DEPTH_OF[$name]=$( [[ $OPERATION == replication || $* == *replication* ]] && echo "-" || depths)
    log "$name: $T s, peak RSS $RSS KiB, validations: ${DEPTH_OF[$name]}"
}

# Baseline for the first run: copying the same bytes.
timed /dev/null cp -r "$SRC" "$CP_DST"
CP_T=$T
rm -rf "$CP_DST"
log "cp -r of the estate ($FILES files, $BYTES bytes): $CP_T s"

log "first run ($TABLES tables, $OPERATION)"
run first "$TABLES"

# Baseline for the later runs: look at every file of both sides once.
timed /dev/null find "$SRC" "$TGT" -printf '%s %T@ %p\n'
FIND_T=$T
log "find walk with a stat of every file of source and target: $FIND_T s"

log "unchanged run"
run unchanged 0

CHANGED=$(( (TABLES + CHANGED_EVERY - 1) / CHANGED_EVERY ))
log "appending one commit to $CHANGED tables (every ${CHANGED_EVERY}th; not timed)"
"$GEN" --append "$SRC" "$TABLES" "$CHANGED_EVERY" >&2
log "1%-changed run"
run changed "$CHANGED"

if ((EXTRA_RUNS)) && [[ $OPERATION != replication ]]; then
    log "unchanged run, clone only (--operation replication; information)"
    run unchanged_repl 0 --operation replication
    if [[ -z $REPLICATOR_BIN ]]; then
        log "unchanged run with reconciliation.deep_every=0 (every table validated deeply; information)"
        run unchanged_deep 0 --set reconciliation.deep_every=0
    fi
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ------------------------------------------------------------------------------
rate() { awk -v n="$TABLES" -v t="$1" 'BEGIN { printf "%.0f", n / t }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v < t) ? "PASS" : "MISS" }'; }
echo
echo "Estate: $TABLES tables ($FILES files, $BYTES bytes) under $SRC; operation $OPERATION;"
echo "replicator: $REPLICATOR ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') when built here)"
echo "concurrency: ${CONCURRENCY:-config defaults}; $(nproc) cores; load average $LOAD_START at start, $LOAD_END at end"
echo "warm page cache; a sync before each timed command; times are wall-clock including process start"
echo
printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' measurement seconds tables/s "peak RSS" "vs baseline" validations
printf '|%s|%s|%s|%s|%s|%s|\n' "---" "---:" "---:" "---:" "---" "---"
printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "baseline: cp -r of the estate" "$CP_T" - - - -
printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "baseline: find walk, stat of every file (both sides)" "$FIND_T" - - - -
printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "first run (empty target)" "${T_OF[first]}" \
    "$(rate "${T_OF[first]}")" "$(mib "${RSS_OF[first]}")" "$(ratio "${T_OF[first]}" "$CP_T") cp -r" "${DEPTH_OF[first]}"
printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "unchanged run" "${T_OF[unchanged]}" \
    "$(rate "${T_OF[unchanged]}")" "$(mib "${RSS_OF[unchanged]}")" "$(ratio "${T_OF[unchanged]}" "$FIND_T") find" "${DEPTH_OF[unchanged]}"
printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "1%-changed run ($CHANGED tables with a new commit)" "${T_OF[changed]}" \
    "$(rate "${T_OF[changed]}")" "$(mib "${RSS_OF[changed]}")" "$(ratio "${T_OF[changed]}" "$FIND_T") find" "${DEPTH_OF[changed]}"
if [[ -n ${T_OF[unchanged_repl]:-} ]]; then
    printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "unchanged run, --operation replication (information)" "${T_OF[unchanged_repl]}" \
        "$(rate "${T_OF[unchanged_repl]}")" "$(mib "${RSS_OF[unchanged_repl]}")" "$(ratio "${T_OF[unchanged_repl]}" "$FIND_T") find" -
fi
if [[ -n ${T_OF[unchanged_deep]:-} ]]; then
    printf '| %-52s | %8s | %8s | %9s | %-16s | %-22s |\n' "unchanged run, deep_every=0 (information)" "${T_OF[unchanged_deep]}" \
        "$(rate "${T_OF[unchanged_deep]}")" "$(mib "${RSS_OF[unchanged_deep]}")" "$(ratio "${T_OF[unchanged_deep]}" "$FIND_T") find" "${DEPTH_OF[unchanged_deep]}"
fi
echo
printf '| %-40s | %10s | %-8s | %-6s |\n' target measured goal result
printf '|%s|%s|%s|%s|\n' "---" "---:" "---" "---"
printf '| %-40s | %10s | %-8s | %-6s |\n' "unchanged run of $TABLES tables" "${T_OF[unchanged]} s" "< 30 s" "$(verdict "${T_OF[unchanged]}" 30)"
printf '| %-40s | %10s | %-8s | %-6s |\n' "1%-changed run of $TABLES tables" "${T_OF[changed]} s" "< 30 s" "$(verdict "${T_OF[changed]}" 30)"
printf '| %-40s | %10s | %-8s | %-6s |\n' "unchanged run / first run" "$(ratio "${T_OF[unchanged]}" "${T_OF[first]}")" "-" "-"
