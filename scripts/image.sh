#!/usr/bin/env bash
# Build the container image with buildah (daemonless, from Debian's packages) and smoke-test
# it against the machine's RabbitMQ and PostgreSQL (docs/deploy.md):
#   1. `replicator --version` in the image prints the workspace's version;
#   2. `replicator serve cloner` in the image, over RabbitMQ (127.0.0.1:5672) and PostgreSQL
#      (127.0.0.1:5432), answers 200 on /readyz; then it is stopped.
#
#   scripts/image.sh                 # build from source (needs the Rust image from a registry)
#   scripts/image.sh --prebuilt BIN  # package a binary built outside (a machine that cannot
#                                    # pull a Rust image); the runtime stage is the same
#
# The runtime base is `debian:bookworm-slim`; where no registry serves it, set
# RUNTIME_IMAGE to a local image (this script makes `localhost/debian:bookworm-minbase` from
# Debian's mirror with debootstrap when asked with --local-base).
set -euo pipefail
cd "$(dirname "$0")/.."

image="ghcr.io/replicator-rs/replicator:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
prebuilt=""
local_base=false
while [ $# -gt 0 ]; do
    case "$1" in
        --prebuilt) prebuilt="$2"; shift 2 ;;
        --local-base) local_base=true; shift ;;
        *) echo "usage: $0 [--prebuilt BIN] [--local-base]" >&2; exit 2 ;;
    esac
done
command -v buildah >/dev/null || { echo "error: buildah is not installed (apt-get install buildah)" >&2; exit 1; }
# vfs storage and chroot isolation: no overlay mounts, no cgroups, no rlimits to raise (a
# container host without CAP_SYS_RESOURCE, like this one, refuses crun's setrlimit).
buildah=(buildah --storage-driver vfs)

runtime_image="${RUNTIME_IMAGE:-docker.io/library/debian:bookworm-slim}"
if $local_base; then
    runtime_image="localhost/debian:bookworm-minbase"
    if ! "${buildah[@]}" inspect --type image "$runtime_image" >/dev/null 2>&1; then
        rootfs="${ROOTFS:-/var/tmp/rootfs-bookworm}"
        if [ ! -x "$rootfs/bin/sh" ]; then
            echo "== debootstrap (minbase bookworm) into $rootfs"
            debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
        fi
        # What debootstrap downloaded is not part of the system.
        rm -f "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_* 2>/dev/null || true
        echo "== importing $rootfs as $runtime_image"
        ctr="$("${buildah[@]}" from scratch)"
        "${buildah[@]}" copy "$ctr" "$rootfs" / >/dev/null
        "${buildah[@]}" commit --rm "$ctr" "$runtime_image" >/dev/null
    fi
fi

echo "== building $image (runtime base $runtime_image)"
if [ -n "$prebuilt" ]; then
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    cp "$prebuilt" "$context/replicator"
    strip "$context/replicator" 2>/dev/null || true
    "${buildah[@]}" build --isolation chroot --network host -f deploy/Containerfile --target runtime \
        --build-arg BUILD_FROM=prebuilt --build-arg RUNTIME_IMAGE="$runtime_image" \
        -t "$image" "$context"
else
    "${buildah[@]}" build --isolation chroot --network host -f deploy/Containerfile --target runtime \
        --build-arg RUNTIME_IMAGE="$runtime_image" -t "$image" .
fi
"${buildah[@]}" images "$image"

ctr="$("${buildah[@]}" from "$image")"
trap '"${buildah[@]}" rm "$ctr" >/dev/null 2>&1 || true; rm -rf "${context:-}" "${workdir:-}"' EXIT
run=("${buildah[@]}" run --isolation chroot --network host)

echo "== smoke test: --version"
version="$("${run[@]}" "$ctr" -- /usr/local/bin/replicator --version)"
echo "$version"
case "$version" in replicator\ *) ;; *) echo "error: unexpected --version: $version" >&2; exit 1 ;; esac
user="$("${run[@]}" "$ctr" -- id -u)"
[ "$user" = "10001" ] || { echo "error: the image runs as uid '$user', not 10001" >&2; exit 1; }

echo "== smoke test: serve cloner reaches /readyz over RabbitMQ and PostgreSQL"
db="replicator_image_smoke"
PGOPTIONS="--client-min-messages=warning" psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
workdir="$(mktemp -d)"
chmod 755 "$workdir"
cat > "$workdir/fleet.yaml" <<YAML
source: { root: /tmp/source }
target: { root: /tmp/target }
bus: { backend: rabbitmq, url: { file: /config/amqp-url }, prefix: image-smoke }
state: { url: "postgres://postgres@127.0.0.1:5432/$db" }
YAML
echo "amqp://guest:guest@127.0.0.1:5672/%2f" > "$workdir/amqp-url"
chmod 644 "$workdir"/*
port=19464
"${run[@]}" -v "$workdir:/config:ro" "$ctr" -- /usr/local/bin/replicator serve cloner \
    --config /config/fleet.yaml --listen "127.0.0.1:$port" > "$workdir/serve.log" 2>&1 &
serve=$!
ready=false
for _ in $(seq 1 60); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=true; break; fi
    kill -0 "$serve" 2>/dev/null || break
    sleep 1
done
pkill -TERM -f "replicator serve cloner --config /config/fleet.yaml --listen 127.0.0.1:$port" || true
wait "$serve" 2>/dev/null || true
tail -n 3 "$workdir/serve.log" || true
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null || true
$ready || { echo "error: /readyz did not answer 200 within 60 s" >&2; exit 1; }
echo "ok: $image runs --version and serve cloner reaches /readyz"
