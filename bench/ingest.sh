#!/usr/bin/env bash
# Ingestion benchmark: a PostgreSQL table of 2M rows × 10 columns of mixed types, loaded by
# `replicator ingest` and by the Python baseline in the same run — full load (polars
# `read_database_uri` over connectorx + deltalake `write_deltalake`), then 1% of the rows
# updated and 0.1% deleted: replicator's merge (which finds the changes itself, every row
# compared by key and row hash) against deltalake's `merge` given the change set. Prints
# times, rows/s, peak RSS and the ratios. With --watermark the table has an `updated_at`
# column that the updates set, and replicator reads only the rows past its watermark (plus
# a key-only scan to find the deletes, `hard_deletes: true`): the same change set the
# baseline is handed. See bench/README.md.
# With --deletion-vectors the table is created with deletion vectors enabled, and the merge
# marks changed and deleted rows in them instead of rewriting files.
# Usage: [REPLICATOR_BIN=…] bench/ingest.sh [--profile release|dev] [--rows N] [--watermark]
#        [--deletion-vectors]
set -euo pipefail

ROWS=${ROWS:-2000000}
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-ingest}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
PROFILE=release
WATERMARK=0
DV=0
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
DURABLE=0

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --profile) PROFILE=$2; shift ;;
        --rows) ROWS=$2; shift ;;
        --watermark) WATERMARK=1 ;;
        --deletion-vectors) DV=1 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIME_BIN=$(command -v /usr/bin/time || true)
[[ -n $TIME_BIN ]] || { echo "/usr/bin/time not found (apt-get install -y time)" >&2; exit 1; }
log() { echo "== $*" >&2; }
python3 -c 'import polars, connectorx, deltalake, pyarrow' 2>/dev/null || {
    echo "python3 needs polars, connectorx, deltalake and pyarrow (pip install polars connectorx deltalake pyarrow)" >&2
    exit 1
}
command -v psql >/dev/null || { echo "psql not found" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

build_replicator "$PROFILE"    # or REPLICATOR_BIN=… to time a built binary

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
T_NAME=bench_ingest
sql() { psql -q -v ON_ERROR_STOP=1 "$PG" -c "$1" >/dev/null; }
sql_value() { psql -q -At -v ON_ERROR_STOP=1 "$PG" -c "$1"; }

log "creating $T_NAME: $ROWS rows × 10 columns"
sql "DROP TABLE IF EXISTS $T_NAME;
     CREATE TABLE $T_NAME (id bigint PRIMARY KEY, customer text, region varchar(8), amount numeric(12,2),
       qty integer, ratio double precision, active boolean, born date, created_at timestamptz, note text);
     INSERT INTO $T_NAME SELECT g, 'customer-' || (g % 100000), (ARRAY['eu','us','apac'])[1 + g % 3],
       (g % 100000) * 1.37, (g % 500)::int, g / 7.0, g % 2 = 0, date '2000-01-01' + (g % 9000)::int,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text) END
     FROM generate_series(1, $ROWS) g;"
if ((WATERMARK)); then
    sql "ALTER TABLE $T_NAME ADD COLUMN updated_at timestamptz NOT NULL DEFAULT timestamptz '2024-06-01 00:00:00+00';
         CREATE INDEX ON $T_NAME (updated_at)"
    INCREMENTAL=", watermark: updated_at"
else
    INCREMENTAL=""
fi
((DV)) && INCREMENTAL="$INCREMENTAL, deletion_vectors: true"
sql "VACUUM ANALYZE $T_NAME"

echo "$PG" > "$BENCH_DIR/pg.url"
cat > "$BENCH_DIR/ingest.yaml" <<YAML
target: { root: $BENCH_DIR/lake }
state: { url: "sqlite://$BENCH_DIR/state.db" }
log: { level: warn }
ingest:
  validate: false
  sources:
    - { type: postgres, connection: "file:$BENCH_DIR/pg.url", table: $T_NAME, primary_key: [id], target: orders, hard_deletes: true$INCREMENTAL }
YAML

cat > "$BENCH_DIR/baseline.py" <<'PY'
import sys, polars as pl, deltalake
mode, uri, table, path = sys.argv[1:5]
if mode == "full":
    df = pl.read_database_uri(f"SELECT * FROM {table}", uri, engine="connectorx")
    deltalake.write_deltalake(path, df.to_arrow(), mode="error")
    print(df.height)
else:
    # The change set, as a CDC feed would hand it: changed rows, and deleted keys flagged.
    changed = pl.read_database_uri(f"SELECT *, false AS _deleted FROM {table} WHERE id % 100 = 1", uri, engine="connectorx")
    deleted = pl.read_database_uri(f"SELECT id, true AS _deleted FROM generate_series(5, {sys.argv[5]}, 1000) AS id", uri, engine="connectorx")
    source = pl.concat([changed, deleted], how="diagonal_relaxed")
    dt = deltalake.DeltaTable(path)
    cols = [c for c in changed.columns if c != "_deleted"]
    m = (dt.merge(source=source.to_arrow(), predicate="t.id = s.id", source_alias="s", target_alias="t")
           .when_matched_delete(predicate="s._deleted")
           .when_matched_update(updates={c: f"s.{c}" for c in cols}, predicate="NOT s._deleted")
           .when_not_matched_insert(updates={c: f"s.{c}" for c in cols}, predicate="NOT s._deleted")
           .execute())
    print(m["num_target_rows_updated"], m["num_target_rows_deleted"])
PY

py_full() { timed "$BENCH_DIR/py.out" python3 "$BENCH_DIR/baseline.py" full "$PG" "$T_NAME" "$BENCH_DIR/py"; }
py_merge() { timed "$BENCH_DIR/py.out" python3 "$BENCH_DIR/baseline.py" merge "$PG" "$T_NAME" "$BENCH_DIR/py" "$ROWS"; }
rep() { timed "$BENCH_DIR/rep.json" "$REPLICATOR" ingest "$BENCH_DIR/ingest.yaml" --json; }

log "full load: replicator"
rep
grep -q '"succeeded":1' "$BENCH_DIR/rep.json" || { cat "$BENCH_DIR/rep.json" >&2; exit 1; }
R_FULL=$T R_FULL_RSS=$RSS
log "full load: polars + write_deltalake"
py_full
P_FULL=$T P_FULL_RSS=$RSS

log "changing 1% of the rows, deleting 0.1%"
SET_WATERMARK=""
((WATERMARK)) && SET_WATERMARK=", updated_at = now()"
sql "UPDATE $T_NAME SET amount = amount + 1, note = 'changed'$SET_WATERMARK WHERE id % 100 = 1;
     DELETE FROM $T_NAME WHERE id % 1000 = 5;"
# Settle the table before either merge reads it: the first scan after a bulk UPDATE sets the
# hint bits of every page it touches (here every page), a cost that fell on whichever merge ran
# first — replicator's. VACUUM does it once for both, as autovacuum would in production.
sql "VACUUM ANALYZE $T_NAME"
if ((WATERMARK)); then
    log "merge: replicator (rows past the watermark, deletes by a key-only scan)"
else
    log "merge: replicator (finds the changes itself)"
fi
rep
grep -q '"succeeded":1' "$BENCH_DIR/rep.json" || { cat "$BENCH_DIR/rep.json" >&2; exit 1; }
DETAIL=$(sed -n 's/.*"detail":"\([^"]*\)".*/\1/p' "$BENCH_DIR/rep.json")
R_MERGE=$T R_MERGE_RSS=$RSS
# The merged table read by another reader (delta-rs's DataFusion scan, deletion vectors
# applied): the source's rows, every changed one changed.
READ_BACK=$(python3 - "$BENCH_DIR/lake/orders" <<'PY'
import sys
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
t = DeltaTable(sys.argv[1])
q = "select count(*) as n, count(distinct id) as d, sum(case when note = 'changed' then 1 else 0 end) as c from t"
r = pa.table(QueryBuilder().register("t", t).execute(q).read_all()).to_pylist()[0]
print(r["n"], r["d"], r["c"])
PY
)
EXPECT=$(sql_value "SELECT count(*) || ' ' || count(*) || ' ' || count(*) FILTER (WHERE note = 'changed') FROM $T_NAME")
[[ $READ_BACK == "$EXPECT" ]] || { echo "replicator's merged table (rows, distinct keys, changed) read back as $READ_BACK, the source has $EXPECT" >&2; exit 1; }
log "merged table read back by delta-rs: $READ_BACK (rows, distinct keys, changed) = the source"
log "merge: deltalake merge of the change set"
py_merge
P_MERGE=$T P_MERGE_RSS=$RSS
P_DETAIL=$(cat "$BENCH_DIR/py.out")

sql "DROP TABLE $T_NAME"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
echo
MODE="key+row-hash comparison"
((WATERMARK)) && MODE="watermark (updated_at) + key-only delete scan"
((DV)) && MODE="$MODE, deletion vectors"
echo "ingest benchmark: $ROWS rows × 10 columns, replicator's merge by $MODE, PostgreSQL → local Delta ($PROFILE build); load before: $LOAD_START, after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-36s %10s %12s %12s\n' "" "time (s)" "rows/s" "peak RSS MB"
printf '%-36s %10s %12s %12s\n' "full load: replicator" "$R_FULL" "$(rate "$ROWS" "$R_FULL")" "$((R_FULL_RSS / 1024))"
printf '%-36s %10s %12s %12s\n' "full load: polars + write_deltalake" "$P_FULL" "$(rate "$ROWS" "$P_FULL")" "$((P_FULL_RSS / 1024))"
printf '%-36s %10s %12s %12s\n' "merge: replicator" "$R_MERGE" "-" "$((R_MERGE_RSS / 1024))"
printf '%-36s %10s %12s %12s\n' "merge: deltalake merge" "$P_MERGE" "-" "$((P_MERGE_RSS / 1024))"
echo "replicator's merge: $DETAIL"
echo "deltalake's merge (updated, deleted): $P_DETAIL"
echo "full load speed vs baseline: $(ratio "$P_FULL" "$R_FULL")× (target ≥ 1.0×)"
echo "merge speed vs deltalake:    $(ratio "$P_MERGE" "$R_MERGE")× (target ≥ 2×)"
echo "peak RSS: replicator $((R_FULL_RSS / 1024)) / $((R_MERGE_RSS / 1024)) MB (target < 500 MB)"
