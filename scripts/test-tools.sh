#!/usr/bin/env bash
# Installs the emulators the test suite runs against, if they are missing (idempotent):
#   - moto's S3 server and boto3 (PyPI), for s3:// tests;
#   - azurite (npm) and azure-storage-blob (PyPI), for Azure Blob tests;
#   - pika (PyPI), for the Python example that publishes a request to the fleet;
#   - aiosmtpd (PyPI), the SMTP server the email notification tests send to;
#   - jsonschema (PyPI), which checks OpenLineage events against the published spec;
#   - Debian's chromium and playwright-core (npm), which drive the console's browser test.
# npm packages go to $REPLICATOR_TOOLS (default /var/tmp/replicator-tools), outside the clone.
set -euo pipefail
tools="${REPLICATOR_TOOLS:-/var/tmp/replicator-tools}"

if ! command -v moto_server >/dev/null 2>&1 \
    || ! python3 -c 'import boto3, azure.storage.blob, pika, aiosmtpd, jsonschema' >/dev/null 2>&1; then
    echo "== installing moto[server], boto3, azure-storage-blob, pika, aiosmtpd, jsonschema (pip)"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' boto3 azure-storage-blob 'pika>=1.3' 'aiosmtpd>=1.4' 'jsonschema>=4.18' 
fi

if [ ! -x "$tools/node_modules/.bin/azurite-blob" ]; then
    echo "== installing azurite (npm) into $tools"
    mkdir -p "$tools"
    (cd "$tools" && npm install --no-audit --no-fund --silent azurite@3)
fi

if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium >/dev/null \
        || { apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; }
fi

if [ ! -d "$tools/node_modules/playwright-core" ]; then
    echo "== installing playwright-core (npm) into $tools (it drives Debian's chromium; no browser download)"
    mkdir -p "$tools"
    (cd "$tools" && npm install --no-audit --no-fund --silent playwright-core@1)
fi
