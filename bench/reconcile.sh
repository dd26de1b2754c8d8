#!/usr/bin/env bash
# Key reconciliation benchmark: `replicator reconcile --key id` against a polars anti-join
# plus comparison (and, for information, one polars full outer join) on the same parquet
# files, on two generated 10-million-row Delta tables (the target misses 0.1% of the keys
# and has 0.1% changed). Prints times, peak RSS, ratios.
#   bench/reconcile.sh [--rows N] [--files N] [--runs N] [--fresh]
set -euo pipefail

ROWS=${ROWS:-10000000}
FILES=${FILES:-10}
RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-reconcile}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
FRESH=0
DURABLE=0
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --rows) ROWS=$2; shift ;;
        --files) FILES=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --fresh) FRESH=1 ;;
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

python3 -c 'import polars' 2>/dev/null || {
    log "installing polars (pip)"
    python3 -m pip install --quiet --disable-pip-version-check polars
}

log "building replicator and the table generator (release)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator)
(cd "$ROOT" && cargo build --release --quiet -p replicator-lake --example gen_reconcile_tables)
REPLICATOR=$CARGO_TARGET_DIR/release/replicator
GEN=$CARGO_TARGET_DIR/release/examples/gen_reconcile_tables

SRC=$BENCH_DIR/source
DST=$BENCH_DIR/target
mkdir -p "$BENCH_DIR"
stamp=$BENCH_DIR/generated-$ROWS-$FILES
if ((FRESH)) || [[ ! -e $stamp ]]; then
    rm -rf "$SRC" "$DST" "$BENCH_DIR"/generated-*
    log "generating $ROWS rows in $FILES files per table"
    t0=$(date +%s)
    "$GEN" "$SRC" "$DST" "$ROWS" "$FILES"
    log "generated in $(( $(date +%s) - t0 )) s"
    touch "$stamp"
fi
want_missing=$(( (ROWS + 999) / 1000 ))
want_changed=$(( ROWS > 500 ? (ROWS - 500 + 999) / 1000 : 0 ))

# polars: the same comparison on the same parquet files (each table was written once, so
# every parquet file under it is live).
cat > "$BENCH_DIR/polars_reconcile.py" <<'PY'
import json, sys, time
import polars as pl
src_dir, dst_dir = sys.argv[1], sys.argv[2]
t0 = time.time()
s = pl.scan_parquet(f"{src_dir}/*.parquet")
t = pl.scan_parquet(f"{dst_dir}/*.parquet")
cols = [c for c in s.collect_schema().names() if c != "id"]
missing = s.join(t, on="id", how="anti").select(pl.len()).collect().item()
extra = t.join(s, on="id", how="anti").select(pl.len()).collect().item()
both = s.join(t, on="id", how="inner", suffix="_t")
differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_t")) for c in cols])
changed = both.filter(differs).select(pl.len()).collect().item()
print(json.dumps({"missing": missing, "extra": extra, "changed": changed,
                  "seconds": time.time() - t0}))
PY

# The same answer from one full outer join (polars plans one scan per table): not the
# issue's baseline, but the fastest polars formulation we found; reported beside it.
cat > "$BENCH_DIR/polars_full_join.py" <<'PY'
import json, sys, time
import polars as pl
src_dir, dst_dir = sys.argv[1], sys.argv[2]
t0 = time.time()
s = pl.scan_parquet(f"{src_dir}/*.parquet")
t = pl.scan_parquet(f"{dst_dir}/*.parquet")
cols = [c for c in s.collect_schema().names() if c != "id"]
j = s.join(t, on="id", how="full", suffix="_t", coalesce=False)
differs = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"{c}_t")) for c in cols])
r = j.select(
    missing=pl.col("id_t").is_null().sum(),
    extra=pl.col("id").is_null().sum(),
    changed=(pl.col("id").is_not_null() & pl.col("id_t").is_not_null() & differs).sum(),
).collect()
print(json.dumps({k: r[k][0] for k in r.columns} | {"seconds": time.time() - t0}))
PY

# Warm the page cache for both tools.
cat "$SRC"/*.parquet "$DST"/*.parquet >/dev/null

rep_t=() rep_rss=() pol_t=() pol_rss=() full_t=() full_rss=()
for r in $(seq 1 "$RUNS"); do
    # Exit code 1 means "differences found", which is the expected outcome here.
    timed "$BENCH_DIR/rep.json" sh -c "'$REPLICATOR' reconcile '$SRC' '$DST' --key id --json; test \$? -eq 1"
    check "$(sed -n 's/.*"missing":\([0-9]*\).*/\1/p' "$BENCH_DIR/rep.json")" "$want_missing" "replicator missing keys"
    check "$(sed -n 's/.*"changed":\([0-9]*\).*/\1/p' "$BENCH_DIR/rep.json")" "$want_changed" "replicator changed keys"
    check "$(sed -n 's/.*"extra":\([0-9]*\).*/\1/p' "$BENCH_DIR/rep.json")" 0 "replicator extra keys"
    rep_t+=("$T") rep_rss+=("$RSS")
    log "replicator run $r: $T s, peak RSS $((RSS / 1024)) MiB"
    timed "$BENCH_DIR/pol.json" python3 "$BENCH_DIR/polars_reconcile.py" "$SRC" "$DST"
    check "$(field missing "$BENCH_DIR/pol.json" | tr -d ' ')" "$want_missing" "polars missing keys"
    check "$(field changed "$BENCH_DIR/pol.json" | tr -d ' ')" "$want_changed" "polars changed keys"
    pol_t+=("$T") pol_rss+=("$RSS")
    log "polars run $r: $T s, peak RSS $((RSS / 1024)) MiB"
    timed "$BENCH_DIR/full.json" python3 "$BENCH_DIR/polars_full_join.py" "$SRC" "$DST"
    check "$(field missing "$BENCH_DIR/full.json" | tr -d ' ')" "$want_missing" "polars (full join) missing keys"
    check "$(field changed "$BENCH_DIR/full.json" | tr -d ' ')" "$want_changed" "polars (full join) changed keys"
    full_t+=("$T") full_rss+=("$RSS")
    log "polars full-join run $r: $T s, peak RSS $((RSS / 1024)) MiB"
done

rb=$(min "${rep_t[@]}") pb=$(min "${pol_t[@]}")
rr=$(max "${rep_rss[@]}") pr=$(max "${pol_rss[@]}")
src_bytes=$(du -sb "$SRC" | cut -f1) dst_bytes=$(du -sb "$DST" | cut -f1)
echo
echo "key reconciliation, $ROWS rows per table ($FILES files; source $((src_bytes / 1000000)) MB, target $((dst_bytes / 1000000)) MB of parquet)"
echo "expected: $want_missing missing, 0 extra, $want_changed changed; both tools found exactly that"
printf '%-34s %10s %14s   %s\n' "" "best s" "peak RSS" "all runs (s)"
printf '%-34s %10s %10s MiB   %s\n' "replicator reconcile --key id" "$rb" "$((rr / 1024))" "${rep_t[*]}"
printf '%-34s %10s %10s MiB   %s\n' "polars (anti-joins + inner join)" "$pb" "$((pr / 1024))" "${pol_t[*]}"
fb=$(min "${full_t[@]}") fr=$(max "${full_rss[@]}")
printf '%-34s %10s %10s MiB   %s\n' "polars (one full outer join)" "$fb" "$((fr / 1024))" "${full_t[*]}"
speed=$(awk -v p="$pb" -v r="$rb" 'BEGIN { printf "%.2f", p / r }')
verdict() { awk -v a="$1" -v b="$3" "BEGIN { exit !(a $2 b) }" && echo PASS || echo MISS; }
echo
printf '%-44s %8s   %-10s %s\n' "polars time / replicator time" "${speed}x" ">= 1.00x" "$(verdict "$speed" ">=" 1)"
printf '%-44s %8s   %-10s %s\n' "polars full-join time / replicator time" "$(awk -v p="$fb" -v r="$rb" 'BEGIN { printf "%.2f", p / r }')x" "(info)" ""
printf '%-44s %8s   %-10s %s\n' "replicator peak RSS" "$((rr / 1024)) MiB" "< 1024 MiB" "$(verdict "$rr" "<" $((1024 * 1024)))"
