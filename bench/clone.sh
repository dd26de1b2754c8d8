#!/usr/bin/env bash
# Clone benchmark: `replicator clone` against `cp -r` of the same ~1 GB, 200-file Delta
# table, then a 1% append + incremental clone, then a re-clone of the unchanged table.
# See bench/README.md. Usage: bench/clone.sh [--fresh] [--durable] [--runs N] [--parallelism N]
set -euo pipefail

FILES=${FILES:-200}                  # data files (= commits) in the generated table
ROWS_PER_FILE=${ROWS_PER_FILE:-114000} # ~5.0 MB of parquet per file: ~1.0 GB
RUNS=${RUNS:-2}                      # timed runs per measurement; the best is reported
UNCHANGED_RUNS=${UNCHANGED_RUNS:-5}  # the unchanged re-clone is cheap: run it more often
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench}
PARALLELISM=${PARALLELISM:-}         # passed as `clone --parallelism` when set
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
FRESH=0
DURABLE=0                            # --durable: each timing also covers a `sync` of what was written

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --fresh) FRESH=1 ;;
        --durable) DURABLE=1 ;;
        --runs) RUNS=$2; shift ;;
        --parallelism) PARALLELISM=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=$BENCH_DIR/base        # the generated table, kept between runs (never modified)
SRC=$BENCH_DIR/src          # hard-linked copy of BASE that this run appends to
CP_DST=$BENCH_DIR/cp-dst
CLONE_DST=$BENCH_DIR/clone-dst
TIME_BIN=$(command -v /usr/bin/time || true)
log() { echo "== $*" >&2; }

# --- build -----------------------------------------------------------------------------
log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator)
(cd "$ROOT" && cargo build --release --quiet -p replicator-lake --example gen_bench_table)
REPLICATOR=$CARGO_TARGET_DIR/release/replicator
GEN=$CARGO_TARGET_DIR/release/examples/gen_bench_table

# --- table -----------------------------------------------------------------------------
PARAMS="files=$FILES rows_per_file=$ROWS_PER_FILE"
count_parquet() { find "$1" -name '*.parquet' -not -path '*/_delta_log/*' | wc -l; }
if ((FRESH)) || [[ ! -f $BASE/.bench-params || $(cat "$BASE/.bench-params") != "$PARAMS" ]] \
    || (($(count_parquet "$BASE") != FILES)); then
    log "generating $BASE ($PARAMS)"
    rm -rf "$BASE"
    mkdir -p "$BENCH_DIR"
    t0=$(date +%s)
    "$GEN" "$BASE" "$FILES" "$ROWS_PER_FILE" >&2
    echo "$PARAMS" >"$BASE/.bench-params"
    log "generated in $(($(date +%s) - t0)) s"
else
    log "reusing $BASE ($PARAMS); pass --fresh to regenerate"
fi

cleanup() { rm -rf "$SRC" "$CP_DST" "$CLONE_DST" "$BENCH_DIR/out.json" "$BENCH_DIR/rss"; }
trap cleanup EXIT
cleanup
# Delta never rewrites a file, so a hard-linked copy is a private, appendable source.
cp -al "$BASE" "$SRC"
rm -f "$SRC/.bench-params"
SRC_BYTES=$(du -sb "$SRC" | cut -f1)
DATA_FILES=$(count_parquet "$SRC")
# Warm the page cache for both tools alike: every timed command reads a cached source.
find "$SRC" -type f -exec cat {} + >/dev/null

# --- timing helpers ----------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
clone() { timed "$BENCH_DIR/out.json" "$REPLICATOR" "${clone_args[@]}" "$SRC" "$CLONE_DST"; }

# --- (a) cp -r ---------------------------------------------------------------------------
cp_t=() cp_rss=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$CP_DST"
    timed /dev/null cp -r "$SRC" "$CP_DST"
    check "$(du -sb "$CP_DST" | cut -f1)" "$SRC_BYTES" "cp -r size"
    cp_t+=("$T") cp_rss+=("${RSS:-0}")
    log "cp -r run $r: $T s"
done

# --- (b) full clone into a fresh target --------------------------------------------------
full_t=() full_rss=() full_ms=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$CLONE_DST"
    clone
    check "$(field committed "$BENCH_DIR/out.json")" true "full clone committed"
    check "$(field num_copied_files "$BENCH_DIR/out.json")" "$DATA_FILES" "full clone file count"
    full_t+=("$T") full_rss+=("${RSS:-0}") full_ms+=("$(field duration_ms "$BENCH_DIR/out.json")")
    log "full clone run $r: $T s"
done
CLONE_BYTES=$(du -sb "$CLONE_DST" | cut -f1)

# --- (c) 1% append, then an incremental clone (each run appends once more) ---------------
APPEND_ROWS=$((FILES * ROWS_PER_FILE / 100))
inc_t=() inc_rss=() inc_ms=() inc_bytes=()
for ((r = 1; r <= RUNS; r++)); do
    "$GEN" --append "$SRC" "$APPEND_ROWS" >&2
    clone
    check "$(field committed "$BENCH_DIR/out.json")" true "incremental clone committed"
    check "$(field num_copied_files "$BENCH_DIR/out.json")" 1 "incremental clone file count"
    inc_t+=("$T") inc_rss+=("${RSS:-0}") inc_ms+=("$(field duration_ms "$BENCH_DIR/out.json")")
    inc_bytes+=("$(field copied_files_size "$BENCH_DIR/out.json")")
    log "incremental clone run $r: $T s ($(field copied_files_size "$BENCH_DIR/out.json") bytes)"
done

# --- (d) re-clone of the unchanged table -------------------------------------------------
same_t=() same_rss=() same_ms=()
for ((r = 1; r <= UNCHANGED_RUNS; r++)); do
    clone
    check "$(field committed "$BENCH_DIR/out.json")" false "unchanged re-clone committed"
    same_t+=("$T") same_rss+=("${RSS:-0}") same_ms+=("$(field duration_ms "$BENCH_DIR/out.json")")
    log "unchanged re-clone run $r: $T s"
done

# --- report ------------------------------------------------------------------------------
cp_best=$(min "${cp_t[@]}") full_best=$(min "${full_t[@]}")
inc_best=$(min "${inc_t[@]}") same_best=$(min "${same_t[@]}")
rss() { [[ -n $TIME_BIN ]] && awk -v k="$(max "$@")" 'BEGIN { printf "%.0f MiB", k / 1024 }' || echo n/a; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
verdict() { awk -v v="$1" -v t="$3" -v op="$2" \
    'BEGIN { ok = (op == ">=") ? v >= t : (op == "<=") ? v <= t : v < t; print ok ? "PASS" : "MISS" }'; }
ratio_tp=$(awk -v c="$cp_best" -v f="$full_best" -v sb="$SRC_BYTES" -v cb="$CLONE_BYTES" \
    'BEGIN { printf "%.2f", (cb / f) / (sb / c) }')
ratio_inc=$(awk -v i="$inc_best" -v f="$full_best" 'BEGIN { printf "%.4f", i / f }')
same_ms_best=$(awk -v t="$same_best" 'BEGIN { printf "%.0f", t * 1000 }')

echo
echo "Delta table: $DATA_FILES data files, $SRC_BYTES bytes ($(awk -v b="$SRC_BYTES" 'BEGIN { printf "%.2f GB", b / 1e9 }')) in $SRC"
if ((DURABLE)); then
    mode="each time includes a trailing sync (data on disk)"
else
    mode="no fsync by either tool (data in the page cache)"
fi
echo "best of $RUNS runs (unchanged: $UNCHANGED_RUNS); warm page cache, sync before each run; $mode"
echo "parallelism: ${PARALLELISM:-default (16)}; machine: $(nproc) cores"
echo
printf '%-36s %9s %9s %11s %12s  %s\n' measurement "best s" "MB/s" "peak RSS" "in-proc ms" "all runs (s)"
printf '%-36s %9s %9s %11s %12s  %s\n' "cp -r" "$cp_best" "$(mbps "$SRC_BYTES" "$cp_best")" \
    "$(rss "${cp_rss[@]}")" - "${cp_t[*]}"
printf '%-36s %9s %9s %11s %12s  %s\n' "replicator clone (full)" "$full_best" "$(mbps "$CLONE_BYTES" "$full_best")" \
    "$(rss "${full_rss[@]}")" "$(min "${full_ms[@]}")" "${full_t[*]}"
printf '%-36s %9s %9s %11s %12s  %s\n' "incremental clone (after 1% append)" "$inc_best" \
    "$(mbps "$(min "${inc_bytes[@]}")" "$inc_best")" "$(rss "${inc_rss[@]}")" "$(min "${inc_ms[@]}")" "${inc_t[*]}"
printf '%-36s %9s %9s %11s %12s  %s\n' "unchanged re-clone" "$same_best" - \
    "$(rss "${same_rss[@]}")" "$(min "${same_ms[@]}")" "${same_t[*]}"
echo
echo "(incremental copied $(min "${inc_bytes[@]}") bytes per run; MB = 10^6 bytes; cp -r MB/s counts the whole"
echo " directory, the full clone counts its target directory: $CLONE_BYTES bytes)"
echo
printf '%-44s %10s   %-12s %s\n' target measured goal result
printf '%-44s %10s   %-12s %s\n' "full clone throughput / cp -r throughput" "${ratio_tp}x" ">= 0.80x" \
    "$(verdict "$ratio_tp" ">=" 0.8)"
printf '%-44s %10s   %-12s %s\n' "incremental clone time / full clone time" \
    "$(awk -v r="$ratio_inc" 'BEGIN { printf "%.1f%%", r * 100 }')" "<= 5%" "$(verdict "$ratio_inc" "<=" 0.05)"
printf '%-44s %10s   %-12s %s\n' "unchanged re-clone (wall, incl. process start)" "${same_ms_best} ms" "< 100 ms" \
    "$(verdict "$same_ms_best" "<" 100)"
