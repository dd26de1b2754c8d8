#!/usr/bin/env bash
# Estate benchmark: TABLES (10,000) small Delta tables of two commits each, replicated and
# validated by `replicator run` (embedded: memory bus, SQLite state) three times — a first
# run into an empty target, a run with nothing changed, and a run after 1% of the tables got
# a new commit — with baselines measured in the same run: `cp -r` of the estate (for the
# first run) and a `find` walk that stats every file of source and target (for the others).
# Prints seconds, tables/s, planning time, peak RSS, ratios and how many tables were
# validated deeply. --fleet runs the same on separate processes (planner, CLONERS (2) `serve
# cloner`, reconciler, notifier) over RabbitMQ with PostgreSQL state and prints each
# process's peak RSS per run; --plan-only (with --fleet) times the planner alone.
# Usage: bench/estate.sh [--tables N] [--fresh] [--changed-every N] [--operation all|replication] [--no-extra-runs] [--fleet [--plan-only]]
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
FLEET=0                               # separate processes over RabbitMQ + PostgreSQL
PLAN_ONLY=0                           # (fleet) time the planner alone; nothing is cloned
AMQP_URL=${AMQP_URL:-amqp://127.0.0.1:5672/%2f}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
CLONERS=${CLONERS:-2}                 # cloner processes (fleet)
# The planner logs how long planning took ("planning done … total_ms=N"); all else stays quiet.
export RUST_LOG=${RUST_LOG:-warn,replicator_planner=info,deltalake_core=off,buoyant_kernel=off,buoyant_kernel_engine=off,sqlx=warn,lapin=off}

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --tables) TABLES=$2; shift ;;
        --fresh) FRESH=1 ;;
        --changed-every) CHANGED_EVERY=$2; shift ;;
        --operation) OPERATION=$2; shift ;;
        --no-extra-runs) EXTRA_RUNS=0 ;;
        --fleet) FLEET=1 ;;
        --plan-only) PLAN_ONLY=1 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIME_BIN=$(command -v /usr/bin/time || true)
[[ -n $TIME_BIN ]] || { echo "/usr/bin/time not found (apt-get install -y time)" >&2; exit 1; }
if ((PLAN_ONLY && !FLEET)); then echo "--plan-only needs --fleet" >&2; exit 2; fi
if ((FLEET)); then
    command -v psql >/dev/null || { echo "psql not found" >&2; exit 1; }
    EXTRA_RUNS=0                      # the information runs are the embedded mode's
fi
log() { echo "== $*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator \
    -p replicator-lake --example gen_estate -p replicator-bus --example amqp_baseline)
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

ID=$(date +%s)-$$
PREFIX=bench-estate-$ID
DB=replicator_bench_estate_${ID//-/_}
declare -A PID_OF                    # fleet process name -> pid
cleanup() {
    for p in "${PID_OF[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((FLEET)); then
        psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
        # The run's queues (rabbitmqctl needs the broker's host and rights; skipped otherwise).
        if command -v rabbitmqctl >/dev/null; then
            for q in $(rabbitmqctl list_queues -q name 2>/dev/null | grep "^$PREFIX\." || true); do
                rabbitmqctl delete_queue "$q" >/dev/null 2>&1 || true
            done
        fi
    fi
    rm -rf "$SRC" "$TGT" "$CP_DST" "$BENCH_DIR"/state.db* "$BENCH_DIR"/*.json "$BENCH_DIR"/*.log "$BENCH_DIR"/cpu-* "$BENCH_DIR/rss"
}
trap cleanup EXIT
cleanup
# Delta never rewrites a file, so a hard-linked copy is a private source to append to.
cp -al "$BASE" "$SRC"
rm -f "$SRC/.generated"
FILES=$(find "$SRC" -type f | wc -l)
BYTES=$(du -sb "$SRC" | cut -f1)

if ((FLEET)); then
    psql "$PG/postgres" -qc "CREATE DATABASE \"$DB\"" >/dev/null
    STATE="$PG/$DB"
    BUS="bus: { backend: rabbitmq, url: \"$AMQP_URL\", prefix: $PREFIX }"
else
    STATE="sqlite://$BENCH_DIR/state.db"
    BUS=""
fi
cat >"$BENCH_DIR/estate.yaml" <<EOF
source: { root: $SRC }
target: { root: $TGT }
state: { url: "$STATE" }
operation: $OPERATION
log: { level: warn }
$BUS
EOF
if [[ -n $CONCURRENCY ]]; then
    echo "concurrency: { cloners: $CONCURRENCY, reconcilers: $CONCURRENCY }" >>"$BENCH_DIR/estate.yaml"
fi

# The run's summary: `run --json` prints RunCompleted, `watch --json` the summary itself.
py() {
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); s=s.get('summary', s); print($1)" "$2"
}
# sql QUERY: rows of the state store, fields separated by `|`.
sql() {
    if ((FLEET)); then
        psql "$PG/$DB" -Atc "$1"
    elif command -v sqlite3 >/dev/null; then
        sqlite3 "$BENCH_DIR/state.db" "$1"
    else
        echo "n/a"
    fi
}
# Validations of the last run by depth, from the state store.
depths() {
    sql "SELECT
        SUM(CASE WHEN detail LIKE '%\"depth\":\"cheap\"%' THEN 1 ELSE 0 END),
        SUM(CASE WHEN detail LIKE '%\"depth\":\"cheap\"%' THEN 0 ELSE 1 END)
        FROM outcomes WHERE stage = 'reconcile' AND run_id = (SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1)" |
        awk -F'|' '$1 == "n/a" { print; next } { printf "%d cheap, %d deep", $1, $2 }'
}
# plan_secs LOG: the planner's own account of its last planning, request to the last task
# published ("planning done … total_ms=N"), in seconds.
plan_secs() {
    grep 'planning done' "$1" | tail -n 1 | sed -n 's/.*total_ms=\([0-9]*\).*/\1/p' |
        awk '{ printf "%.2f", $1 / 1000 }'
}

# --- the fleet's processes -----------------------------------------------------------------
port=19480
# start NAME SERVICE: one `replicator serve SERVICE`, ready before this returns.
start() {
    local name=$1 p=$port
    "$REPLICATOR" serve "$2" --config "$BENCH_DIR/estate.yaml" --listen "127.0.0.1:$p" \
        2>"$BENCH_DIR/$name.log" &
    PID_OF[$name]=$!
    port=$((port + 1))
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "$name did not become ready" >&2; cat "$BENCH_DIR/$name.log" >&2; exit 1
}
# Peak RSS (KiB) of a process since reset_peaks (Linux: VmHWM, reset by `clear_refs` 5).
peak() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
reset_peaks() { for p in "${PID_OF[@]}"; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done; }
# CPU seconds used so far by each fleet process, and by the machine's PostgreSQL and RabbitMQ
# (every process of theirs alive now): where a run's time goes.
cpu_now() {
    local p
    for p in "${FLEET_PROCS[@]}"; do
        printf '%s %s\n' "$p" "$(ps -o times= -p "${PID_OF[$p]}" | tr -d ' ')"
    done
    printf 'postgres %s\n' "$(ps -C postgres -o times= | awk '{ s += $1 } END { print s + 0 }')"
    printf 'rabbitmq %s\n' "$(ps -C beam.smp -o times= | awk '{ s += $1 } END { print s + 0 }')"
}
# cpu_used BEFORE AFTER: "name=seconds …" of the difference.
cpu_used() {
    awk 'NR == FNR { a[$1] = $2; next } { printf "%s=%d ", $1, $2 - a[$1] }' "$1" "$2"
}
FLEET_PROCS=(planner)
if ((!PLAN_ONLY)); then
    for i in $(seq 1 "$CLONERS"); do FLEET_PROCS+=("cloner$i"); done
    FLEET_PROCS+=(reconciler notifier)
fi
if ((FLEET)); then
    log "fleet: ${FLEET_PROCS[*]} over RabbitMQ ($PREFIX), state in PostgreSQL ($DB)"
    for name in "${FLEET_PROCS[@]}"; do start "$name" "${name%%[0-9]*}"; done
fi
# One fleet run: `submit`, then `watch` until the run is complete (what is timed).
submit_watch() {
    local run
    run=$("$REPLICATOR" submit "$BENCH_DIR/estate.yaml" "$@")
    "$REPLICATOR" watch "$run" --config "$BENCH_DIR/estate.yaml" --json
}

# run NAME WANT_FILES: time one run, check every table succeeded and the files copied.
declare -A T_OF RSS_OF DEPTH_OF PLAN_OF CPU_OF XACT_OF
xacts() { psql "$PG/postgres" -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'"; }
run() {
    local name=$1 want=$2
    shift 2
    if ((FLEET)); then
        reset_peaks
        cpu_now >"$BENCH_DIR/cpu-before"
        local xacts_before
        xacts_before=$(xacts)
        TIME_BIN='' timed "$BENCH_DIR/$name.json" submit_watch "$@"
        cpu_now >"$BENCH_DIR/cpu-after"
        CPU_OF[$name]=$(cpu_used "$BENCH_DIR/cpu-before" "$BENCH_DIR/cpu-after")
        RSS=$(for p in "${FLEET_PROCS[@]}"; do printf '%s=%s ' "$p" "$(peak "${PID_OF[$p]}")"; done)
        # Statements committed by PostgreSQL for the run (every transaction of the bench's database).
        XACT_OF[$name]=$(($(xacts) - xacts_before))
        PLAN_OF[$name]=$(plan_secs "$BENCH_DIR/planner.log")
        log "$name: CPU seconds ${CPU_OF[$name]}; PostgreSQL transactions ${XACT_OF[$name]}"
    else
        timed "$BENCH_DIR/$name.json" "$REPLICATOR" run "$BENCH_DIR/estate.yaml" --json "$@" \
            2>"$BENCH_DIR/$name.log"
        PLAN_OF[$name]=$(plan_secs "$BENCH_DIR/$name.log")
    fi
    check "$(py "s['succeeded']" "$BENCH_DIR/$name.json")" "$TABLES" "$name: tables succeeded"
    check "$(py "s['files_copied']" "$BENCH_DIR/$name.json")" "$want" "$name: files copied"
    T_OF[$name]=$T RSS_OF[$name]=$RSS
    DEPTH_OF[$name]=$( [[ $OPERATION == replication || $* == *replication* ]] && echo "-" || depths)
    log "$name: $T s (planning ${PLAN_OF[$name]:-?} s), peak RSS $RSS KiB, validations: ${DEPTH_OF[$name]}"
}

if ((PLAN_ONLY)); then
    # The planner alone: the request, discovery, the run's task rows in PostgreSQL and every
    # task published to RabbitMQ (nothing consumes them; the queues go at exit).
    reset_peaks
    "$REPLICATOR" submit "$BENCH_DIR/estate.yaml" >/dev/null
    for _ in $(seq 1 3000); do grep -q 'planning done' "$BENCH_DIR/planner.log" && break; sleep 0.1; done
    PLAN=$(plan_secs "$BENCH_DIR/planner.log")
    [[ -n $PLAN ]] || { echo "the planner did not finish" >&2; cat "$BENCH_DIR/planner.log" >&2; exit 1; }
    check "$(sql "SELECT COUNT(*) FROM tasks")" "$TABLES" "task rows"
    # Baseline in the same run: the raw broker publishing as many messages of the same size
    # (the planner's queue's average), persistent, confirmed, as many in flight as the planner.
    SIZE=$(rabbitmqctl list_queues -q name messages message_bytes 2>/dev/null |
        awk -v q="$PREFIX.tasks.clone" '$1 == q && $2 > 0 { printf "%d", $3 / $2 }')
    SIZE=${SIZE:-600}
    log "raw broker: $TABLES messages of $SIZE bytes, 256 confirms in flight, no consumer"
    RAW=$("$CARGO_TARGET_DIR/release/examples/amqp_baseline" "$AMQP_URL" "$TABLES" "$SIZE" 8 256 publish-only |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["publish_s"])')
    PUBLISH=$(grep 'run planned' "$BENCH_DIR/planner.log" | tail -n 1 |
        sed -n 's/.*publish_ms=\([0-9]*\).*/\1/p' | awk '{ printf "%.2f", $1 / 1000 }')
    echo
    echo "Planning $TABLES tables: the fleet's planner alone (discovery, task rows in PostgreSQL, tasks published to RabbitMQ)"
    echo "replicator: $REPLICATOR ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') when built here)"
    echo "$(nproc) cores; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
    grep 'planning done\|run planned' "$BENCH_DIR/planner.log" | sed 's/^[^ ]* *//'
    echo
    printf '| %-20s | %10s | %-6s | %-6s |\n' measurement measured goal result
    printf '|%s|%s|%s|%s|\n' "---" "---:" "---" "---"
    printf '| %-20s | %10s | %-6s | %-6s |\n' "planning time" "$PLAN s" "< 5 s" \
        "$(awk -v v="$PLAN" 'BEGIN { print (v < 5) ? "PASS" : "MISS" }')"
    printf '| %-20s | %10s | %-6s | %-6s |\n' "planner peak RSS" \
        "$(awk -v k="$(peak "${PID_OF[planner]}")" 'BEGIN { printf "%.0f MiB", k / 1024 }')" - -
    echo
    echo "baseline: the raw broker publishing $TABLES messages of $SIZE bytes (persistent, confirmed, 256 in flight): $RAW s"
    echo "the planner's publishing: $PUBLISH s = $(awk -v a="$RAW" -v b="$PUBLISH" 'BEGIN { printf "%.2f", a / b }')x the raw broker's speed"
    exit 0
fi

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
# KiB as MiB; a fleet's "name=KiB …" as "name N, … MiB".
mib() {
    tr ' ' '\n' <<<"$1" | awk -F= '
        NF == 2 { printf "%s%s %.0f", sep, $1, $2 / 1024; sep = ", " }
        NF == 1 && $1 != "" { printf "%.0f", $1 / 1024 }
        END { print " MiB" }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v < t) ? "PASS" : "MISS" }'; }
ROW='| %-52s | %8s | %8s | %8s | %-9s | %-16s | %-22s |\n'
# row LABEL NAME BASELINE_T BASELINE_NAME: one measured run.
row() {
    printf "$ROW" "$1" "${T_OF[$2]}" "$(rate "${T_OF[$2]}")" "${PLAN_OF[$2]:--}" "$(mib "${RSS_OF[$2]}")" \
        "$(ratio "${T_OF[$2]}" "$3") $4" "${DEPTH_OF[$2]}"
}
echo
echo "Estate: $TABLES tables ($FILES files, $BYTES bytes) under $SRC; operation $OPERATION;"
echo "replicator: $REPLICATOR ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?') when built here)"
if ((FLEET)); then
    echo "mode: fleet: ${FLEET_PROCS[*]} (separate processes) over RabbitMQ, PostgreSQL state"
else
    echo "mode: embedded (one process: memory bus, SQLite state)"
fi
echo "concurrency: ${CONCURRENCY:-config defaults}; $(nproc) cores; load average $LOAD_START at start, $LOAD_END at end"
echo "warm page cache; a sync before each timed command; times are wall-clock including process start"
echo "planning: the planner's own account, request to the last task published"
echo
printf "$ROW" measurement seconds tables/s planning "peak RSS" "vs baseline" validations
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "---" "---:" "---:" "---:" "---:" "---" "---"
printf "$ROW" "baseline: cp -r of the estate" "$CP_T" - - - - -
printf "$ROW" "baseline: find walk, stat of every file (both sides)" "$FIND_T" - - - - -
row "first run (empty target)" first "$CP_T" "cp -r"
row "unchanged run" unchanged "$FIND_T" find
row "1%-changed run ($CHANGED tables with a new commit)" changed "$FIND_T" find
if [[ -n ${T_OF[unchanged_repl]:-} ]]; then
    DEPTH_OF[unchanged_repl]=-
    row "unchanged run, --operation replication (information)" unchanged_repl "$FIND_T" find
fi
if [[ -n ${T_OF[unchanged_deep]:-} ]]; then
    row "unchanged run, deep_every=0 (information)" unchanged_deep "$FIND_T" find
fi
if ((FLEET)); then
    echo
    echo "CPU seconds during each run (fleet processes; all of PostgreSQL's and RabbitMQ's processes):"
    for r in first unchanged changed; do echo "- $r: ${CPU_OF[$r]}; PostgreSQL transactions: ${XACT_OF[$r]}"; done
fi
echo
printf '| %-40s | %10s | %-8s | %-6s |\n' target measured goal result
printf '|%s|%s|%s|%s|\n' "---" "---:" "---" "---"
printf '| %-40s | %10s | %-8s | %-6s |\n' "unchanged run of $TABLES tables" "${T_OF[unchanged]} s" "< 30 s" "$(verdict "${T_OF[unchanged]}" 30)"
printf '| %-40s | %10s | %-8s | %-6s |\n' "1%-changed run of $TABLES tables" "${T_OF[changed]} s" "< 30 s" "$(verdict "${T_OF[changed]}" 30)"
printf '| %-40s | %10s | %-8s | %-6s |\n' "unchanged run / first run" "$(ratio "${T_OF[unchanged]}" "${T_OF[first]}")" "-" "-"
