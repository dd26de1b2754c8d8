#!/usr/bin/env bash
# Large clone benchmark: `replicator clone` against `cp -r` and `rclone sync` of a ~2 GB,
# 400-file Delta table on local disk (peak RSS, 1% append + incremental clone), then the
# same clone against `rclone` on an S3 emulator (moto_server on 127.0.0.1). See bench/README.md.
# Usage: bench/clone-large.sh [--fresh] [--durable] [--runs N] [--s3-runs N] [--s3-files N]
#                             [--parallelism N] [--no-s3]
set -euo pipefail

FILES=${FILES:-400}                  # data files (= commits) in the generated table
ROWS_PER_FILE=${ROWS_PER_FILE:-114000} # ~5.0 MB of parquet per file: ~2.0 GB
RUNS=${RUNS:-5}                      # timed runs per local measurement; the best is reported
S3_RUNS=${S3_RUNS:-3}                # timed runs per S3 measurement
S3_FILES=${S3_FILES:-$FILES}         # data files in the S3 part (a prefix of the table)
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-large}
PARALLELISM=${PARALLELISM:-}         # passed as `clone --parallelism` when set
RCLONE_FLAGS=${RCLONE_FLAGS:-}       # extra flags for every `rclone sync` (default: none)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
FRESH=0
DURABLE=0                            # --durable: each local timing also covers a `sync`
S3=1

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --fresh) FRESH=1 ;;
        --durable) DURABLE=1 ;;
        --runs) RUNS=$2; shift ;;
        --s3-runs) S3_RUNS=$2; shift ;;
        --s3-files) S3_FILES=$2; shift ;;
        --parallelism) PARALLELISM=$2; shift ;;
        --no-s3) S3=0 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done
((S3_FILES >= 1 && S3_FILES <= FILES)) || { echo "--s3-files must be 1..$FILES" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=$BENCH_DIR/base        # the generated table, kept between runs (never modified)
SRC=$BENCH_DIR/src          # hard-linked copy of BASE that this run appends to
S3_SRC=$BENCH_DIR/s3-src    # local source of the S3 part (hard links, or a --version clone)
CP_DST=$BENCH_DIR/cp-dst
RCLONE_DST=$BENCH_DIR/rclone-dst
CLONE_DST=$BENCH_DIR/clone-dst
TIME_BIN=$(command -v /usr/bin/time || true)
log() { echo "== $*" >&2; }

for tool in rclone python3; do
    command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install -y rclone)" >&2; exit 1; }
done
if ((S3)); then
    command -v moto_server >/dev/null || { echo "moto_server not found (pip install 'moto[server]')" >&2; exit 1; }
    command -v curl >/dev/null || { echo "curl not found" >&2; exit 1; }
    python3 -c 'import boto3' || { echo "python3 cannot import boto3" >&2; exit 1; }
fi
[[ -n $TIME_BIN ]] || log "/usr/bin/time not found (apt-get install -y time): no peak RSS"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)   # reported: other work on the machine adds noise

# --- build -----------------------------------------------------------------------------
log "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet -p replicator-cli --bin replicator)
(cd "$ROOT" && cargo build --release --quiet -p replicator-lake --example gen_bench_table)
REPLICATOR=$CARGO_TARGET_DIR/release/replicator
GEN=$CARGO_TARGET_DIR/release/examples/gen_bench_table

# --- table -----------------------------------------------------------------------------
PARAMS="files=$FILES rows_per_file=$ROWS_PER_FILE"
file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
count_parquet() { find "$1" -name '*.parquet' -not -path '*/_delta_log/*' | wc -l; }
if ((FRESH)) || [[ ! -f $BASE/.bench-params || $(cat "$BASE/.bench-params") != "$PARAMS" ]] \
    || (($(count_parquet "$BASE") != FILES)); then
    log "generating $BASE ($PARAMS); free space in $(dirname "$BENCH_DIR"):"
    mkdir -p "$BENCH_DIR"
    df -h "$BENCH_DIR" >&2
    rm -rf "$BASE"
    t0=$(date +%s)
    "$GEN" "$BASE" "$FILES" "$ROWS_PER_FILE" >&2
    echo "$PARAMS" >"$BASE/.bench-params"
    log "generated in $(($(date +%s) - t0)) s"
else
    log "reusing $BASE ($PARAMS); pass --fresh to regenerate"
fi

MOTO_PID=
cleanup() {
    if [[ -n $MOTO_PID ]]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    rm -rf "$SRC" "$S3_SRC" "$CP_DST" "$RCLONE_DST" "$CLONE_DST" \
        "$BENCH_DIR/out.json" "$BENCH_DIR/rss" "$BENCH_DIR/moto.log"
}
trap cleanup EXIT
cleanup
# Delta never rewrites a file, so a hard-linked copy is a private, appendable source.
cp -al "$BASE" "$SRC"
rm -f "$SRC/.bench-params"
SRC_BYTES=$(file_bytes "$SRC")   # regular files only: directory sizes differ by history
DATA_FILES=$(count_parquet "$SRC")
# Warm the page cache for every tool alike: every timed command reads a cached source.
find "$SRC" -type f -exec cat {} + >/dev/null
log "free space after setup:"; df -h "$BENCH_DIR" >&2

# --- timing helpers ----------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
clone() { timed "$BENCH_DIR/out.json" "$REPLICATOR" "${clone_args[@]}" "$@"; }
# shellcheck disable=SC2086 # RCLONE_FLAGS is a list of flags
rclone_sync() { timed /dev/null rclone sync -q $RCLONE_FLAGS "$@"; }
# rclone reads its remotes from the environment; no config file.
export RCLONE_CONFIG=/dev/null

# --- (a) cp -r ---------------------------------------------------------------------------
cp_t=() cp_rss=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$CP_DST"
    timed /dev/null cp -r "$SRC" "$CP_DST"
    check "$(file_bytes "$CP_DST")" "$SRC_BYTES" "cp -r size"
    cp_t+=("$T") cp_rss+=("${RSS:-0}")
    log "cp -r run $r: $T s"
done
rm -rf "$CP_DST"

# --- (b) rclone sync into a fresh directory ----------------------------------------------
rc_t=() rc_rss=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$RCLONE_DST"
    rclone_sync "$SRC" "$RCLONE_DST"
    check "$(file_bytes "$RCLONE_DST")" "$SRC_BYTES" "rclone sync size"
    rc_t+=("$T") rc_rss+=("${RSS:-0}")
    log "rclone sync run $r: $T s"
done

# --- (c) full clone into a fresh target --------------------------------------------------
full_t=() full_rss=() full_ms=()
for ((r = 1; r <= RUNS; r++)); do
    rm -rf "$CLONE_DST"
    clone "$SRC" "$CLONE_DST"
    check "$(field committed "$BENCH_DIR/out.json")" true "full clone committed"
    check "$(field num_copied_files "$BENCH_DIR/out.json")" "$DATA_FILES" "full clone file count"
    full_t+=("$T") full_rss+=("${RSS:-0}") full_ms+=("$(field duration_ms "$BENCH_DIR/out.json")")
    log "full clone run $r: $T s, peak RSS ${RSS:-?} KiB"
done
CLONE_BYTES=$(file_bytes "$CLONE_DST")

# --- (d) 1% append, then an incremental clone and an incremental rclone sync -------------
APPEND_ROWS=$((FILES * ROWS_PER_FILE / 100))
inc_t=() inc_rss=() inc_ms=() inc_bytes=() rci_t=() rci_rss=()
for ((r = 1; r <= RUNS; r++)); do
    "$GEN" --append "$SRC" "$APPEND_ROWS" >&2
    clone "$SRC" "$CLONE_DST"
    check "$(field committed "$BENCH_DIR/out.json")" true "incremental clone committed"
    check "$(field num_copied_files "$BENCH_DIR/out.json")" 1 "incremental clone file count"
    inc_t+=("$T") inc_rss+=("${RSS:-0}") inc_ms+=("$(field duration_ms "$BENCH_DIR/out.json")")
    inc_bytes+=("$(field copied_files_size "$BENCH_DIR/out.json")")
    log "incremental clone run $r: $T s ($(field copied_files_size "$BENCH_DIR/out.json") bytes)"
    rclone_sync "$SRC" "$RCLONE_DST"
    check "$(file_bytes "$RCLONE_DST")" "$(file_bytes "$SRC")" "incremental rclone sync size"
    rci_t+=("$T") rci_rss+=("${RSS:-0}")
    log "incremental rclone sync run $r: $T s"
done

# --- (e) re-clone of the unchanged table -------------------------------------------------
same_t=() same_rss=() same_ms=()
for ((r = 1; r <= RUNS; r++)); do
    clone "$SRC" "$CLONE_DST"
    check "$(field committed "$BENCH_DIR/out.json")" false "unchanged re-clone committed"
    same_t+=("$T") same_rss+=("${RSS:-0}") same_ms+=("$(field duration_ms "$BENCH_DIR/out.json")")
    log "unchanged re-clone run $r: $T s"
done
rm -rf "$RCLONE_DST" "$CLONE_DST"

# --- (f) S3 emulator ---------------------------------------------------------------------
# s3py CMD ARGS: list/delete objects on the emulator with boto3.
s3py() {
    python3 - "$@" <<'PY'
import os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
cmd, bucket = sys.argv[1], sys.argv[2]
prefix = sys.argv[3].rstrip("/") + "/" if len(sys.argv) > 3 else ""
if cmd == "mb":
    s3.create_bucket(Bucket=bucket)
    sys.exit(0)
keys, size = [], 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for o in page.get("Contents", []):
        keys.append(o["Key"])
        size += o["Size"]
if cmd == "size":
    print(size, len(keys))
elif cmd == "rm":
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
PY
}
s3_bytes() { s3py size bench "$1" | cut -d' ' -f1; }

if ((S3)); then
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # Only the emulator: explicit test credentials, no profile, no instance metadata. The
    # sandbox's AWS_CA_BUNDLE makes rclone's AWS SDK fail ("unable to load custom CA
    # bundle"); the endpoint is plain HTTP, so it is dropped for this script.
    unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
        AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true \
        AWS_EC2_METADATA_DISABLED=true
    export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other \
        RCLONE_CONFIG_MOTO_ENDPOINT=$AWS_ENDPOINT_URL RCLONE_CONFIG_MOTO_REGION=us-east-1 \
        RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=testing RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=testing
    log "starting moto_server on 127.0.0.1:$PORT"
    moto_server -H 127.0.0.1 -p "$PORT" >"$BENCH_DIR/moto.log" 2>&1 &
    MOTO_PID=$!
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null "$AWS_ENDPOINT_URL/" && break
        kill -0 "$MOTO_PID" 2>/dev/null || { cat "$BENCH_DIR/moto.log" >&2; exit 1; }
        sleep 0.2
    done
    s3py mb bench

    # The S3 source: the whole table (hard links), or its first S3_FILES files as a one-commit
    # table (`clone --version`), so that rclone and replicator start from the same directory.
    if ((S3_FILES == FILES)); then
        cp -al "$BASE" "$S3_SRC"
        rm -f "$S3_SRC/.bench-params"
    else
        # Version V of the generated table holds V - (latest version - FILES) data files.
        latest=$(find "$BASE/_delta_log" -name '*.json' -printf '%f\n' | sort | tail -n 1)
        latest=$((10#${latest%.json}))
        "$REPLICATOR" clone --version $((S3_FILES + latest - FILES)) "$BASE" "$S3_SRC" >/dev/null
    fi
    S3_SRC_BYTES=$(file_bytes "$S3_SRC")
    S3_DATA_FILES=$(count_parquet "$S3_SRC")
    check "$S3_DATA_FILES" "$S3_FILES" "S3 source file count"
    find "$S3_SRC" -type f -exec cat {} + >/dev/null

    # Upload once: local -> S3 (timed once; it is also the source of the S3 -> S3 clones).
    clone "$S3_SRC" s3://bench/src
    check "$(field num_copied_files "$BENCH_DIR/out.json")" "$S3_DATA_FILES" "upload file count"
    up_t=$T up_rss=${RSS:-0} up_ms=$(field duration_ms "$BENCH_DIR/out.json")
    S3_UP_BYTES=$(s3_bytes src)
    log "upload (local -> s3://bench/src): $T s"

    # s3_series NAME SRC DST_PREFIX KIND: time S3_RUNS runs into an emptied prefix;
    # KIND is clone or rclone. Sets S_T (all times), S_RSS, S_MS and S_BYTES.
    s3_series() {
        local name=$1 from=$2 dst=$3 kind=$4 r want
        S_T=() S_RSS=() S_MS=()
        for ((r = 1; r <= S3_RUNS; r++)); do
            s3py rm bench "$dst"
            if [[ $kind == clone ]]; then
                clone "$from" "s3://bench/$dst"
                check "$(field committed "$BENCH_DIR/out.json")" true "$name committed"
                check "$(field num_copied_files "$BENCH_DIR/out.json")" "$S3_DATA_FILES" "$name file count"
                S_MS+=("$(field duration_ms "$BENCH_DIR/out.json")")
            else
                rclone_sync --s3-no-check-bucket "$from" "moto:bench/$dst"
                [[ $from == moto:* ]] && want=$S3_UP_BYTES || want=$S3_SRC_BYTES
                check "$(s3_bytes "$dst")" "$want" "$name size"
                S_MS+=(-)
            fi
            S_T+=("$T") S_RSS+=("${RSS:-0}")
            log "$name run $r: $T s"
        done
        S_BYTES=$(s3_bytes "$dst")
        s3py rm bench "$dst"   # moto keeps everything in memory
    }
    # S3 -> S3: the clone and rclone alternate, run by run. One moto serves every run and grows
    # as it goes, so a fixed order (all clone runs, then all rclone runs) hands one tool a
    # fresher server.
    s3s_t=() s3s_rss=() s3s_ms=() rs3s_t=() rs3s_rss=()
    runs=$S3_RUNS S3_RUNS=1
    for ((k = 1; k <= runs; k++)); do
        s3_series "clone s3 -> s3 (server-side copy)" s3://bench/src dst clone
        s3s_t+=("${S_T[@]}") s3s_rss+=("${S_RSS[@]}") s3s_ms+=("${S_MS[@]}") s3s_bytes=$S_BYTES
        s3_series "rclone sync s3 -> s3" moto:bench/src rclone-dst2 rclone
        rs3s_t+=("${S_T[@]}") rs3s_rss+=("${S_RSS[@]}") rs3s_bytes=$S_BYTES
    done
    S3_RUNS=$runs
    s3_series "clone local -> s3" "$S3_SRC" dst2 clone
    l2s_t=("${S_T[@]}") l2s_rss=("${S_RSS[@]}") l2s_ms=("${S_MS[@]}") l2s_bytes=$S_BYTES
    s3_series "rclone sync local -> s3" "$S3_SRC" rclone-dst rclone
    rl2s_t=("${S_T[@]}") rl2s_rss=("${S_RSS[@]}") rl2s_bytes=$S_BYTES
    MOTO_RSS=$(ps -o rss= -p "$MOTO_PID" | tr -d ' ')
fi

# --- report ------------------------------------------------------------------------------
rss() { [[ -n $TIME_BIN ]] && awk -v k="$(max "$@")" 'BEGIN { printf "%.0f MiB", k / 1024 }' || echo n/a; }
mbps() { [[ $1 == - ]] && echo - || awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / 1e6 / t }'; }
verdict() { awk -v v="$1" -v t="$3" -v op="$2" \
    'BEGIN { ok = (op == ">=") ? v >= t : (op == "<=") ? v <= t : (op == ">") ? v > t : v < t; print ok ? "PASS" : "MISS" }'; }
row() { printf '%-40s %9s %9s %11s %12s  %s\n' "$@"; }
# line NAME BYTES TIMES RSS MS: one table row (best of TIMES)
line() {
    local name=$1 bytes=$2 best
    local -n times=$3 rsses=$4 mss=$5
    best=$(min "${times[@]}")
    row "$name" "$best" "$(mbps "$bytes" "$best")" "$(rss "${rsses[@]}")" "$(min "${mss[@]}")" "${times[*]}"
}
no_ms=(-)
cp_best=$(min "${cp_t[@]}") rc_best=$(min "${rc_t[@]}") full_best=$(min "${full_t[@]}")
inc_best=$(min "${inc_t[@]}") same_best=$(min "${same_t[@]}")
full_mbps=$(awk -v b="$CLONE_BYTES" -v t="$full_best" 'BEGIN { print b / t }')
ratio_cp=$(awk -v s="$SRC_BYTES" -v c="$cp_best" -v f="$full_mbps" 'BEGIN { printf "%.2f", f / (s / c) }')
ratio_rc=$(awk -v s="$SRC_BYTES" -v c="$rc_best" -v f="$full_mbps" 'BEGIN { printf "%.2f", f / (s / c) }')
ratio_inc=$(awk -v i="$inc_best" -v f="$full_best" 'BEGIN { printf "%.4f", i / f }')
peak_kib=$(max "${full_rss[@]}")
peak_mb=$(awk -v k="$peak_kib" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')

echo
echo "Delta table: $DATA_FILES data files, $SRC_BYTES bytes ($(awk -v b="$SRC_BYTES" 'BEGIN { printf "%.2f GB", b / 1e9 }')) in $SRC"
if ((DURABLE)); then
    mode="each local time includes a trailing sync (data on disk)"
else
    mode="no fsync by any tool (data in the page cache)"
fi
echo "local: best of $RUNS runs; warm page cache, sync before each run; $mode"
echo "load average (1/5/15 min) at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "parallelism: ${PARALLELISM:-default (16)}; rclone $(rclone version 2>/dev/null | head -n 1 | cut -d' ' -f2) ${RCLONE_FLAGS:-(default flags)}; machine: $(nproc) cores"
echo
row measurement "best s" "MB/s" "peak RSS" "in-proc ms" "all runs (s)"
line "cp -r" "$SRC_BYTES" cp_t cp_rss no_ms
line "rclone sync (fresh target)" "$SRC_BYTES" rc_t rc_rss no_ms
line "replicator clone (full)" "$CLONE_BYTES" full_t full_rss full_ms
line "incremental clone (after 1% append)" "$(min "${inc_bytes[@]}")" inc_t inc_rss inc_ms
line "incremental rclone sync (same append)" "$(min "${inc_bytes[@]}")" rci_t rci_rss no_ms
line "unchanged re-clone" - same_t same_rss same_ms
echo
echo "(incremental: $(min "${inc_bytes[@]}") bytes of data per run, its MB/s counts only those; MB = 10^6 bytes;"
echo " cp -r and rclone MB/s count the source directory, the full clone its target: $CLONE_BYTES bytes)"

if ((S3)); then
    echo
    subset=""
    ((S3_FILES < FILES)) && subset=" (subset: the first $S3_FILES of $FILES files, a one-commit table)"
    echo "S3 emulator (moto_server, 127.0.0.1:$PORT): source $S3_DATA_FILES data files, $S3_SRC_BYTES bytes$subset"
    echo "best of $S3_RUNS runs, each into an emptied prefix of one bucket; moto RSS at the end: $(awk -v k="$MOTO_RSS" 'BEGIN { printf "%.0f MiB", k / 1024 }')"
    echo
    row measurement "best s" "MB/s" "peak RSS" "in-proc ms" "all runs (s)"
    up_ts=("$up_t") up_rsss=("$up_rss") up_mss=("$up_ms")
    line "clone local -> s3://bench/src (once)" "$S3_UP_BYTES" up_ts up_rsss up_mss
    line "clone local -> s3 (dst2)" "$l2s_bytes" l2s_t l2s_rss l2s_ms
    line "rclone sync local -> s3" "$rl2s_bytes" rl2s_t rl2s_rss no_ms
    line "clone s3 -> s3, same bucket (dst)" "$s3s_bytes" s3s_t s3s_rss s3s_ms
    line "rclone sync s3 -> s3, same bucket" "$rs3s_bytes" rs3s_t rs3s_rss no_ms
    l2s_x=$(awk -v a="$(min "${rl2s_t[@]}")" -v b="$(min "${l2s_t[@]}")" 'BEGIN { printf "%.2f", a / b }')
    s3s_x=$(awk -v a="$(min "${rs3s_t[@]}")" -v b="$(min "${s3s_t[@]}")" 'BEGIN { printf "%.2f", a / b }')
    echo
    echo "rclone time / replicator time: local -> s3 ${l2s_x}x, s3 -> s3 ${s3s_x}x (no target; > 1 means replicator is faster)"
fi

echo
printf '%-46s %12s   %-10s %s\n' target measured goal result
printf '%-46s %12s   %-10s %s\n' "full clone throughput / cp -r throughput" "${ratio_cp}x" ">= 0.90x" \
    "$(verdict "$ratio_cp" ">=" 0.9)"
printf '%-46s %12s   %-10s %s\n' "full clone throughput / rclone sync throughput" "${ratio_rc}x" "> 1.00x" \
    "$(verdict "$ratio_rc" ">" 1)"
printf '%-46s %12s   %-10s %s\n' "peak RSS of the full clone" "${peak_mb} MB" "< 150 MB" \
    "$(verdict "$peak_mb" "<" 150)"
printf '%-46s %12s   %-10s %s\n' "incremental clone time / full clone time" \
    "$(awk -v r="$ratio_inc" 'BEGIN { printf "%.1f%%", r * 100 }')" "<= 3%" "$(verdict "$ratio_inc" "<=" 0.03)"
echo "(MB = 10^6 bytes: ${peak_mb} MB = $(awk -v k="$peak_kib" 'BEGIN { printf "%.1f", k / 1024 }') MiB)"
