#!/usr/bin/env bash
# A real Kafka-protocol broker for the Kafka tests: tansu (crates.io, Apache-2.0), in memory.
#   scripts/kafka-broker.sh install   build it into $REPLICATOR_TOOLS/tansu (about 15 CPU-minutes,
#                                     1.4 GiB of build files under $REPLICATOR_TOOLS/tansu-build)
#   scripts/kafka-broker.sh start     start it on 127.0.0.1:19092 unless something listens there;
#                                     prints the bootstrap address
#   scripts/kafka-broker.sh test      start it, then run the Kafka contract tests and the Kafka
#                                     fleet pipeline against it (topics created by the admin API)
# scripts/test runs those tests against librdkafka's mock cluster only; see docs/decisions.md
# for why CI does not run them against tansu.
set -euo pipefail
tools="${REPLICATOR_TOOLS:-/var/tmp/replicator-tools}"
bin="$tools/tansu/bin/tansu"
addr="127.0.0.1:19092"

case "${1:-}" in
install)
    if [ ! -x "$bin" ]; then
        cargo install tansu --version 0.6.0 --locked --features dynostore \
            --root "$tools/tansu" --target-dir "$tools/tansu-build"
    fi
    ;;
start)
    [ -x "$bin" ] || { echo "error: tansu is not installed (scripts/kafka-broker.sh install)" >&2; exit 1; }
    if ! (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then
        nohup "$bin" broker --listener-url "tcp://$addr" --advertised-listener-url "tcp://$addr" \
            --storage-engine memory://tansu/ >"$tools/tansu.log" 2>&1 &
        for _ in $(seq 1 50); do
            (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break
            sleep 0.2
        done
    fi
    echo "$addr"
    ;;
test)
    brokers="$("$0" start)"
    export REPLICATOR_KAFKA_BROKERS="$brokers"
    cargo test --workspace --locked --test kafka
    cargo test --workspace --locked --test fleet -- kafka
    ;;
*)
    echo "usage: scripts/kafka-broker.sh install|start|test" >&2
    exit 2
    ;;
esac
