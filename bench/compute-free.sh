#!/usr/bin/env bash
# Compute-free clone benchmark (issue 19): TABLES managed Databricks tables in S3 (moto),
# replicated against the workspace emulator with `clone_mode: warehouse` (the baseline: DEEP
# CLONE on the target warehouse) and with `clone_mode: storage` (files copied by the worker
# with vended credentials), each followed by an unchanged re-run, in one process. Prints the
# statements sent to the warehouses, the bytes each side copied, the credential requests and
# wall time per mode and run. Counts are what this measures; the emulator's "warehouse" is
# this machine, so its seconds say nothing about a real warehouse's.
# Usage: bench/compute-free.sh [--tables N] [--commits N] [--rows N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
"$ROOT/scripts/test-tools.sh" >&2   # moto
cd "$ROOT"
exec cargo run --quiet --locked -p replicator-tests --example compute_free -- "$@"
