# Shared helpers of the bench scripts (sourced, not run). The caller sets BENCH_DIR, TIME_BIN,
# DURABLE, PARALLELISM and REPLICATOR before using them.

# timed OUT CMD...: run CMD (stdout to OUT) after an untimed `sync`; with --durable a
# trailing `sync` is timed too. Sets T (s) and RSS (KiB).
timed() {
    local out=$1 t0 t1
    shift
    sync
    # bash's own clock: `$(date)` would fork a process inside the timed window.
    t0=${EPOCHREALTIME/,/.}
    if [[ -n $TIME_BIN ]]; then
        "$TIME_BIN" -f '%M' -o "$BENCH_DIR/rss" "$@" >"$out"
    else
        "$@" >"$out"
    fi
    if ((DURABLE)); then sync; fi
    t1=${EPOCHREALTIME/,/.}
    RSS=
    if [[ -n $TIME_BIN ]]; then RSS=$(tail -n 1 "$BENCH_DIR/rss"); fi
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
}
min() { printf '%s\n' "$@" | sort -g | head -n 1; }
max() { printf '%s\n' "$@" | sort -g | tail -n 1; }
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }
check() { [[ $1 == "$2" ]] || { echo "unexpected $3: got $1, want $2" >&2; exit 1; }; }
clone_args=(clone --json)
if [[ -n ${PARALLELISM:-} ]]; then clone_args+=(--parallelism "$PARALLELISM"); fi

# build_replicator PROFILE: build the `replicator` binary of the whole workspace (release or dev)
# and set REPLICATOR to it; with REPLICATOR_BIN set, time that binary instead (an older build,
# or one built elsewhere) and build nothing.
build_replicator() {
    if [[ -n ${REPLICATOR_BIN:-} ]]; then
        log "timing $REPLICATOR_BIN (REPLICATOR_BIN; nothing built)"
        REPLICATOR=$REPLICATOR_BIN
        return
    fi
    log "building replicator ($1 profile, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    if [[ $1 == release ]]; then
        (cd "$ROOT" && cargo build --release --quiet --workspace --bin replicator)
        REPLICATOR=$CARGO_TARGET_DIR/release/replicator
    else
        (cd "$ROOT" && cargo build --quiet --workspace --bin replicator)
        REPLICATOR=$CARGO_TARGET_DIR/debug/replicator
    fi
}
