#!/usr/bin/env bash
# Volume sync benchmark: `replicator volume` against `rclone sync` on the same trees in the
# same run — 20,000 small files (1–64 KiB) and 20 files of 100 MB, local -> local and
# local -> S3 emulator (moto_server on 127.0.0.1): a full sync into an empty target, then
# an unchanged re-sync. See bench/README.md.
# Usage: [REPLICATOR_BIN=…] bench/volumes.sh [--fresh] [--no-s3] [--profile release|dev] [--runs N]
#   TREES="small big" TARGETS="local s3" (the defaults) choose the pairs measured.
set -euo pipefail

SMALL_FILES=${SMALL_FILES:-20000}    # small files, 1–64 KiB each, in directories of 1000
BIG_FILES=${BIG_FILES:-20}           # large files
BIG_MB=${BIG_MB:-100}                # MB (10^6 bytes) per large file
RUNS=${RUNS:-1}                      # timed runs per measurement; the best is reported
BENCH_DIR=${BENCH_DIR:-/tmp/replicator-bench-volumes}
PARALLELISM=${PARALLELISM:-}         # passed as `volume --parallelism` when set
RCLONE_FLAGS=${RCLONE_FLAGS:-}       # extra flags for every `rclone sync` (default: none)
TREES=${TREES:-small big}            # which trees: small, big
TARGETS=${TARGETS:-local s3}         # which targets: local, s3
PROFILE=release
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}
FRESH=0
DURABLE=0

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
    case $1 in
        --fresh) FRESH=1 ;;
        --no-s3) TARGETS=${TARGETS//s3/} ;;
        --profile) PROFILE=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=$BENCH_DIR/base
DST=$BENCH_DIR/dst
TIME_BIN=$(command -v /usr/bin/time || true)
log() { echo "== $*" >&2; }
for tool in rclone python3; do
    command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install -y rclone)" >&2; exit 1; }
done
S3=0
[[ " $TARGETS " == *" s3 "* ]] && S3=1
if ((S3)); then
    command -v moto_server >/dev/null || { echo "moto_server not found (pip install 'moto[server]')" >&2; exit 1; }
    python3 -c 'import boto3' || { echo "python3 cannot import boto3" >&2; exit 1; }
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- build -----------------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
build_replicator "$PROFILE"

# --- trees -----------------------------------------------------------------------------
PARAMS="small=$SMALL_FILES big=$BIG_FILES x ${BIG_MB}MB"
if ((FRESH)) || [[ ! -f $BASE/.params || $(cat "$BASE/.params") != "$PARAMS" ]]; then
    log "generating $BASE ($PARAMS)"
    rm -rf "$BASE"
    mkdir -p "$BASE"
    python3 - "$BASE" "$SMALL_FILES" "$BIG_FILES" "$BIG_MB" <<'PY'
import os, random, sys, time
base, small, big, big_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(15)
old = time.time() - 3600  # an hour ago: clean for every tool's change detection
for i in range(small):
    d = os.path.join(base, "small", f"d{i // 1000:03d}")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"f{i:05d}.bin")
    with open(p, "wb") as f:
        f.write(os.urandom(rng.randint(1024, 64 * 1024)))
    os.utime(p, (old, old))
os.makedirs(os.path.join(base, "big"), exist_ok=True)
for i in range(big):
    p = os.path.join(base, "big", f"model-{i:02d}.bin")
    with open(p, "wb") as f:
        for _ in range(big_mb):
            f.write(os.urandom(1_000_000))
    os.utime(p, (old, old))
PY
    echo "$PARAMS" >"$BASE/.params"
fi
tree_bytes() { find "$1" -type f -not -path '*/_replicator_*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
tree_files() { find "$1" -type f -not -path '*/_replicator_*' | wc -l; }
SMALL_BYTES=$(tree_bytes "$BASE/small") BIG_BYTES=$(tree_bytes "$BASE/big")
# Warm the page cache for every tool alike.
find "$BASE/small" "$BASE/big" -type f -exec cat {} + >/dev/null

export RCLONE_CONFIG=/dev/null
vol_args=(volume --json)
[[ -n $PARALLELISM ]] && vol_args+=(--parallelism "$PARALLELISM")
volume() { timed "$BENCH_DIR/out.json" "$REPLICATOR" "${vol_args[@]}" "$@"; }
# shellcheck disable=SC2086 # RCLONE_FLAGS is a list of flags
rclone_sync() { timed /dev/null rclone sync -q $RCLONE_FLAGS "$@"; }

MOTO_PID=
cleanup() {
    if [[ -n $MOTO_PID ]]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
    rm -rf "$DST" "$BENCH_DIR/out.json" "$BENCH_DIR/rss" "$BENCH_DIR/moto.log"
}
trap cleanup EXIT
cleanup

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
        if "/_replicator_volume/" not in "/" + o["Key"]:
            keys.append(o["Key"])
            size += o["Size"]
if cmd == "size":
    print(size, len(keys))
elif cmd == "rm":
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objs})
PY
}

# measure KIND NAME SRC DST BYTES FILES CLEAR: RUNS full syncs into an emptied target, then
# RUNS unchanged re-syncs; KIND is replicator or rclone. Sets FULL (best s), SAME (best s).
measure() {
    local kind=$1 name=$2 src=$3 dst=$4 bytes=$5 files=$6 clear=$7 r full=() same=()
    for ((r = 1; r <= RUNS; r++)); do
        $clear "$dst"
        if [[ $kind == replicator ]]; then
            volume "$src" "$dst"
            check "$(field files_copied "$BENCH_DIR/out.json")" "$files" "$name files copied"
        else
            rclone_sync "$src" "$dst"
        fi
        full+=("$T")
        log "$name full sync run $r: $T s"
    done
    for ((r = 1; r <= RUNS; r++)); do
        if [[ $kind == replicator ]]; then
            volume "$src" "$dst"
            check "$(field files_copied "$BENCH_DIR/out.json")" 0 "$name unchanged files copied"
        else
            rclone_sync "$src" "$dst"
        fi
        same+=("$T")
        log "$name unchanged re-sync run $r: $T s"
    done
    FULL=$(min "${full[@]}") SAME=$(min "${same[@]}") TRUSTED=-
    if [[ $kind == replicator ]]; then
        # With --verify-every: one sync that lists and records the check, then re-syncs
        # that trust the manifest instead of listing the target (docs/volumes.md).
        local trusted=()
        volume "$src" "$dst" --verify-every 1h
        for ((r = 1; r <= RUNS; r++)); do
            volume "$src" "$dst" --verify-every 1h
            check "$(field files_copied "$BENCH_DIR/out.json")" 0 "$name trusted files copied"
            check "$(field target_trusted "$BENCH_DIR/out.json")" true "$name target trusted"
            trusted+=("$T")
            log "$name unchanged re-sync run $r, manifest trusted (--verify-every 1h): $T s"
        done
        TRUSTED=$(min "${trusted[@]}")
    fi
}
clear_local() { rm -rf "$1"; }
clear_s3() { s3py rm bench "${1#*bench/}"; }

declare -A RESULT
# run_pair WHERE TREE: both tools on one tree and one kind of target.
run_pair() {
    local where=$1 tree=$2 src=$BASE/$2 bytes files dst_r dst_c clear
    bytes=$([[ $tree == small ]] && echo "$SMALL_BYTES" || echo "$BIG_BYTES")
    files=$([[ $tree == small ]] && echo "$SMALL_FILES" || echo "$BIG_FILES")
    if [[ $where == local ]]; then
        dst_r=$DST/replicator-$tree dst_c=$DST/rclone-$tree clear=clear_local
    else
        dst_r=s3://bench/replicator-$tree dst_c=moto:bench/rclone-$tree clear=clear_s3
    fi
    measure replicator "replicator $tree -> $where" "$src" "$dst_r" "$bytes" "$files" $clear
    RESULT[$where,$tree,r,full]=$FULL RESULT[$where,$tree,r,same]=$SAME RESULT[$where,$tree,r,trusted]=$TRUSTED
    if [[ $where == local ]]; then
        check "$(tree_bytes "$dst_r")" "$bytes" "replicator $tree bytes"
    else
        check "$(s3py size bench "replicator-$tree" | cut -d' ' -f1)" "$bytes" "replicator $tree bytes on S3"
    fi
    measure rclone "rclone $tree -> $where" "$src" "$dst_c" "$bytes" "$files" $clear
    RESULT[$where,$tree,c,full]=$FULL RESULT[$where,$tree,c,same]=$SAME
    $clear "$dst_r"; $clear "$dst_c"
}

if [[ " $TARGETS " == *" local "* ]]; then
    for tree in $TREES; do run_pair local "$tree"; done
fi

if ((S3)); then
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
        python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/')" 2>/dev/null && break
        sleep 0.2
    done
    s3py mb bench
    RCLONE_FLAGS="--s3-no-check-bucket $RCLONE_FLAGS"
    for tree in $TREES; do run_pair s3 "$tree"; done
fi

# --- report ------------------------------------------------------------------------------
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "trees: small = $SMALL_FILES files, $SMALL_BYTES bytes; big = $BIG_FILES files, $BIG_BYTES bytes"
echo "best of $RUNS run(s); replicator $PROFILE build; parallelism ${PARALLELISM:-default (16)}; rclone $(rclone version 2>/dev/null | head -n 1 | cut -d' ' -f2) ${RCLONE_FLAGS:-(default flags)}"
echo "machine: $(nproc) cores; load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-6s %-6s %-11s %9s %9s %8s %12s\n' target tree tool "full s" files/s MB/s "unchanged s"
read -r -a wheres <<<"$TARGETS"
for where in "${wheres[@]}"; do
    for tree in $TREES; do
        bytes=$([[ $tree == small ]] && echo "$SMALL_BYTES" || echo "$BIG_BYTES")
        files=$([[ $tree == small ]] && echo "$SMALL_FILES" || echo "$BIG_FILES")
        for tool in r c; do
            name=$([[ $tool == r ]] && echo replicator || echo rclone)
            full=${RESULT[$where,$tree,$tool,full]} same=${RESULT[$where,$tree,$tool,same]}
            printf '%-6s %-6s %-11s %9s %9s %8s %12s\n' "$where" "$tree" "$name" "$full" \
                "$(rate "$files" "$full")" "$(rate "$((bytes / 1000000))" "$full")" "$same"
        done
    done
done
echo
printf '%-40s %10s %10s   %s\n' "rclone time / replicator time" full unchanged result
for where in "${wheres[@]}"; do
    for tree in $TREES; do
        f=$(ratio "${RESULT[$where,$tree,c,full]}" "${RESULT[$where,$tree,r,full]}")
        s=$(ratio "${RESULT[$where,$tree,c,same]}" "${RESULT[$where,$tree,r,same]}")
        ok=$(awk -v f="$f" -v s="$s" 'BEGIN { print (f >= 1 && s >= 1) ? "PASS" : "MISS" }')
        printf '%-40s %9sx %9sx   %s\n' "$tree -> $where" "$f" "$s" "$ok"
    done
done
if [[ " $TREES " == *" small "* ]]; then
    for where in "${wheres[@]}"; do
        same=${RESULT[$where,small,r,same]}
        printf 'unchanged re-sync of %s small files -> %s: %s s (target < 2 s): %s\n' "$SMALL_FILES" "$where" \
            "$same" "$(awk -v t="$same" 'BEGIN { print t < 2 ? "PASS" : "MISS" }')"
        trusted=${RESULT[$where,small,r,trusted]}
        printf '  with --verify-every 1h (target not listed, manifest trusted): %s s: %s\n' \
            "$trusted" "$(awk -v t="$trusted" 'BEGIN { print t < 2 ? "PASS" : "MISS" }')"
    done
fi
