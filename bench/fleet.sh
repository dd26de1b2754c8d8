#!/usr/bin/env bash
# Fleet benchmark: TABLES small Delta tables replicated (1) by the embedded mode and (2) by a
# fleet of separate processes over RabbitMQ (planner, 2 cloners, reconciler, notifier) with
# state in PostgreSQL, against (3) the raw broker moving the same number of messages of a
# clone task's size. Prints tables per second, the fleet's overhead per task against the
# embedded mode, and the ratios. See bench/README.md.
# Usage: bench/fleet.sh [--tables N] [--fresh] [--operation replication|all]
set -euo pipefail

TABLES=${TABLES:-2000}
OPERATION=${OPERATION:-replication}
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-fleet}
AMQP_URL=${AMQP_URL:-amqp://127.0.0.1:5672/%2f}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
CLONERS=${CLONERS:-2}                  # cloner processes
CONCURRENCY=${CONCURRENCY:-8}          # tables in flight per cloner process
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
FRESH=0

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --tables) TABLES=$2; shift ;;
        --fresh) FRESH=1 ;;
        --operation) OPERATION=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ESTATE=$BENCH_DIR/estate-$TABLES
log() { echo "== $*" >&2; }
command -v psql >/dev/null || { echo "psql not found" >&2; exit 1; }

log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator \
    -p replicator-lake --example gen_estate -p replicator-bus --example amqp_baseline)
REPLICATOR=$CARGO_TARGET_DIR/release/replicator

if ((FRESH)) || [[ ! -d $ESTATE ]]; then
    rm -rf "$ESTATE"
    log "generating $TABLES tables under $ESTATE"
    "$CARGO_TARGET_DIR/release/examples/gen_estate" "$ESTATE" "$TABLES" 10 >&2
fi

ID=$(date +%s)-$$
PREFIX=bench-$ID
DB=replicator_bench_${ID//-/_}
WORK=$BENCH_DIR/run-$ID
mkdir -p "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    # The run's queues (rabbitmqctl needs the broker's host and rights; skipped otherwise).
    if command -v rabbitmqctl >/dev/null; then
        for q in $(rabbitmqctl list_queues -q name 2>/dev/null | grep "^$PREFIX\." || true); do
            rabbitmqctl delete_queue "$q" >/dev/null 2>&1 || true
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
psql "$PG/postgres" -qc "CREATE DATABASE \"$DB\"" >/dev/null

common="source: { root: $ESTATE }
operation: $OPERATION
concurrency: { cloners: $CONCURRENCY, reconcilers: $CONCURRENCY }
log: { level: warn }"

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# 1. Embedded: the same estate, every service in one process, memory bus, SQLite.
cat >"$WORK/embedded.yaml" <<EOF
$common
target: { root: $WORK/embedded-target }
state: { url: "sqlite://$WORK/embedded.db" }
EOF
log "embedded: replicator run ($TABLES tables, $OPERATION)"
t0=$(now)
"$REPLICATOR" run "$WORK/embedded.yaml" --json >"$WORK/embedded.json"
t1=$(now)
EMB=$(secs "$t0" "$t1")
[[ $(field "['summary']['succeeded']" <"$WORK/embedded.json") == "$TABLES" ]] || { echo "embedded run did not succeed" >&2; exit 1; }

# 2. Fleet: separate processes over RabbitMQ, PostgreSQL state.
cat >"$WORK/fleet.yaml" <<EOF
$common
target: { root: $WORK/fleet-target }
bus: { backend: rabbitmq, url: "$AMQP_URL", prefix: $PREFIX }
state: { url: "$PG/$DB" }
EOF
port=19460
start() {
    "$REPLICATOR" serve "$1" --config "$WORK/fleet.yaml" --listen "127.0.0.1:$port" 2>"$WORK/$1-$port.log" &
    PIDS+=($!)
    local p=$port
    port=$((port + 1))
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$1 did not become ready" >&2; cat "$WORK/$1-$p.log" >&2; exit 1
}
log "fleet: planner, $CLONERS cloners, reconciler, notifier over RabbitMQ ($PREFIX)"
start planner
for _ in $(seq 1 "$CLONERS"); do start cloner; done
start reconciler
start notifier
t0=$(now)
RUN=$("$REPLICATOR" submit "$WORK/fleet.yaml")
"$REPLICATOR" watch "$RUN" --config "$WORK/fleet.yaml" --json >"$WORK/fleet.json"
t1=$(now)
FLEET=$(secs "$t0" "$t1")
[[ $(field "['succeeded']" <"$WORK/fleet.json") == "$TABLES" ]] || { echo "fleet run did not succeed" >&2; cat "$WORK/fleet.json" >&2; exit 1; }

# 3. Raw broker: the same number of messages of a clone task's size, published with
# confirms and consumed with acks (prefetch = one cloner's concurrency).
SIZE=$(python3 -c "import json; print(len(json.dumps({'schema_version':1,'message_id':'0'*36,'run_id':'0'*36,'created_at':'2026-11-21T00:00:00.000000Z','task_id':'0'*36,'attempt':1,'table':'s00.t00000','source':'file://$ESTATE/s00/t00000/','target':'file://$WORK/fleet-target/s00/t00000/','operation':'$OPERATION','version':None})))")
log "raw broker: $TABLES messages of $SIZE bytes"
"$CARGO_TARGET_DIR/release/examples/amqp_baseline" "$AMQP_URL" "$TABLES" "$SIZE" "$CONCURRENCY" >"$WORK/raw.json"
RAW=$(field "['total_s']" <"$WORK/raw.json")

python3 - "$TABLES" "$EMB" "$FLEET" "$RAW" "$SIZE" <<'EOF'
import sys
n, emb, fleet, raw, size = int(sys.argv[1]), *map(float, sys.argv[2:5]), int(sys.argv[5])
print(f"| measurement | seconds | tables (messages) per second |")
print(f"|---|---:|---:|")
print(f"| embedded (`replicator run`, one process) | {emb:.3f} | {n/emb:.1f} |")
print(f"| fleet over RabbitMQ (submit to watch's exit) | {fleet:.3f} | {n/fleet:.1f} |")
print(f"| raw RabbitMQ, {n} messages of {size} B, confirms + acks | {raw:.3f} | {n/raw:.1f} |")
print()
overhead_ms = (fleet - emb) / n * 1000
print(f"| target | measured | goal | result |")
print(f"|---|---:|---|---|")
rate = n / fleet
print(f"| fleet tables per second | {rate:.1f} | >= 100 | {'PASS' if rate >= 100 else 'MISS'} |")
print(f"| fleet overhead per task vs embedded | {overhead_ms:.2f} ms | < 5 ms | {'PASS' if overhead_ms < 5 else 'MISS'} |")
print(f"| fleet time / raw broker time | {fleet/raw:.2f}x | (information) | |")
EOF
