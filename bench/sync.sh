#!/usr/bin/env bash
# Sync-group benchmark: TABLES (1,000) small Delta tables in GROUPS (20) sync groups (one per
# schema, `sNN.*`) on a schedule, served by a fleet — `replicator serve planner`, two cloners
# and a notifier over the machine's RabbitMQ, state in its PostgreSQL, clone only. After every
# group reached its first cut, 1% of the tables get a new commit; the bench measures the time
# from the next schedule tick to every group at its new cut, and the CPU the planner and
# cloners use while idle between ticks. The baseline, measured in the same run: `cp -r` of the
# changed tables (what a copy of just the changes costs).
#
# The schedule is every minute (`min_interval: 1m`): the production default is 30 minutes; the
# work per tick is the same.
# Usage: bench/sync.sh [--tables N] [--groups N] [--idle SECONDS]
set -euo pipefail

TABLES=${TABLES:-1000}
GROUPS_N=${GROUPS_N:-20}
IDLE=${IDLE:-20}
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-sync}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
REPLICATOR_BIN=${REPLICATOR_BIN:-}

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --tables) TABLES=$2; shift ;;
        --groups) GROUPS_N=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done
((GROUPS_N <= 20)) || { echo "--groups: at most 20 (the estate has 20 schemas)" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "== $*" >&2; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator \
    -p replicator-lake --example gen_estate)
REPLICATOR=${REPLICATOR_BIN:-$CARGO_TARGET_DIR/release/replicator}
GEN=$CARGO_TARGET_DIR/release/examples/gen_estate

ID=$(date +%s)$$
PREFIX=bench-sync-$ID
DB=replicator_bench_sync_$ID
SRC=$BENCH_DIR/source
TGT=$BENCH_DIR/target
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$DB\"" >/dev/null 2>&1 || true
    rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$DB\"" >/dev/null

log "generating $TABLES tables"
"$GEN" "$SRC" "$TABLES" 10 >&2

{
    cat <<EOF
source: { root: $SRC }
target: { root: $TGT }
operation: replication
bus: { backend: rabbitmq, prefix: $PREFIX }
state: { url: "postgres://postgres@127.0.0.1:5432/$DB" }
concurrency: { cloners: 8 }
log: { level: warn }
sync:
  default_schedule: "* * * * *"
  min_interval: 1m
  poll: 1s
  max_retries: 0
  groups:
EOF
    for ((g = 0; g < GROUPS_N; g++)); do
        printf '    - { name: g%02d, owner: [dr@example.com], tables: ["s%02d.*"] }\n' "$g" "$g"
    done
} >"$BENCH_DIR/sync.yaml"

serve() {
    local name=$1 port=$2
    "$REPLICATOR" serve "$name" --config "$BENCH_DIR/sync.yaml" --listen "127.0.0.1:$port" \
        2>"$BENCH_DIR/$name-$port.log" &
    PIDS+=($!)
    eval "PID_$3=$!"
}
serve planner 19611 PLANNER
serve cloner 19612 CLONER1
serve cloner 19613 CLONER2
serve notifier 19614 NOTIFIER
for port in 19611 19612 19613 19614; do
    for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done

# status: the groups' JSON (`sync status`); cut_count AT: how many groups are at a cut taken at
# or after AT (epoch s), read from the store (cheaper than `sync status`, which also reads
# every table's log for the commits a cut does not cover).
status() { "$REPLICATOR" sync status --config "$BENCH_DIR/sync.yaml" --json; }
cut_count() {
    local n
    n=$(psql -h 127.0.0.1 -U postgres -d "$DB" -tAc \
        "SELECT count(*) FROM sync_groups WHERE status = 'success' AND cut_at >= $(($1 * 1000))") || n=0
    echo "${n:-0}"
}
# wait_cuts AT: until every group has a cut at or after AT; prints when (epoch s, fraction).
wait_cuts() {
    local at=$1 deadline=$((SECONDS + 600))
    while (($(cut_count "$at") < GROUPS_N)); do
        ((SECONDS < deadline)) || { echo "groups not at their cut after 600 s" >&2; status >&2; exit 1; }
        sleep 0.2
    done
    echo "${EPOCHREALTIME/,/.}"
}
next_minute() { echo $(( ($(date +%s) / 60 + 1) * 60 )); }

# A new group waits for its first tick.
T1=$(next_minute)
log "first cut of every group at the tick $(date -ud "@$T1" +%T) (full copy of $TABLES tables)"
DONE1=$(wait_cuts "$T1")
FIRST=$(awk -v a="$T1" -v b="$DONE1" 'BEGIN { printf "%.2f", b - a }')
log "first cut: $FIRST s after its tick"

# Idle between ticks: CPU (user + system) of the planner and the cloners while nothing is due.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sleep 2
HZ=$(getconf CLK_TCK)
P0=$(ticks "$PID_PLANNER"); C0=$(( $(ticks "$PID_CLONER1") + $(ticks "$PID_CLONER2") ))
W0=${EPOCHREALTIME/,/.}
sleep "$IDLE"
P1=$(ticks "$PID_PLANNER"); C1=$(( $(ticks "$PID_CLONER1") + $(ticks "$PID_CLONER2") ))
W1=${EPOCHREALTIME/,/.}
IDLE_P=$(awk -v t=$((P1 - P0)) -v hz="$HZ" -v a="$W0" -v b="$W1" 'BEGIN { printf "%.2f", 100 * t / hz / (b - a) }')
IDLE_C=$(awk -v t=$((C1 - C0)) -v hz="$HZ" -v a="$W0" -v b="$W1" 'BEGIN { printf "%.2f", 100 * t / hz / (b - a) / 2 }')
log "idle CPU: planner $IDLE_P %, cloners $IDLE_C % each (over $IDLE s)"

# 1% of the tables change; the baseline copies just those tables.
EVERY=100
"$GEN" --append "$SRC" "$TABLES" "$EVERY" >&2
mapfile -t CHANGED < <(for ((i = 0; i < TABLES; i += EVERY)); do printf '%s/s%02d/t%05d\n' "$SRC" $((i % 20)) "$i"; done)
rm -rf "$BENCH_DIR/cp-dst"; mkdir -p "$BENCH_DIR/cp-dst"
sync
t0=${EPOCHREALTIME/,/.}
for t in "${CHANGED[@]}"; do cp -r "$t" "$BENCH_DIR/cp-dst/$(basename "$t")"; done
t1=${EPOCHREALTIME/,/.}
CP=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
log "baseline: cp -r of the ${#CHANGED[@]} changed tables: $CP s"

T2=$(next_minute)
(( T2 - $(date +%s) >= 3 )) || T2=$((T2 + 60))
log "next tick $(date -ud "@$T2" +%T): every group to its new cut"
DONE2=$(wait_cuts "$T2")
CHANGED_T=$(awk -v a="$T2" -v b="$DONE2" 'BEGIN { printf "%.2f", b - a }')
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "sync groups: $TABLES tables in $GROUPS_N groups, 1% changed between ticks ($(date -u +%F), $(nproc) cores)"
printf '%-44s %10s\n' "first cut (full copy), tick -> all groups" "${FIRST} s"
printf '%-44s %10s\n' "1% changed, tick -> all groups at new cut" "${CHANGED_T} s"
printf '%-44s %10s\n' "baseline: cp -r of the changed tables" "${CP} s"
printf '%-44s %10s\n' "ratio (sync / cp -r)" "$(awk -v a="$CHANGED_T" -v b="$CP" 'BEGIN { printf "%.1fx", a / (b > 0 ? b : 0.001) }')"
printf '%-44s %10s\n' "idle CPU between ticks: planner" "${IDLE_P} %"
printf '%-44s %10s\n' "idle CPU between ticks: each cloner" "${IDLE_C} %"
echo "load average: $LOAD_START at start, $LOAD_END at end"
