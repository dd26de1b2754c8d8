#!/usr/bin/env bash
# Installs the emulators the test suite runs against, if they are missing (idempotent):
#   - moto's S3 server and boto3 (PyPI), for s3:// tests;
#   - azurite (npm) and azure-storage-blob (PyPI), for Azure Blob tests;
#   - pika (PyPI), for the Python example that publishes a request to the fleet;
#   - aiosmtpd (PyPI), the SMTP server the email notification tests send to.
# npm packages go to $REPLICATOR_TOOLS (default /var/tmp/replicator-tools), outside the clone.
set -euo pipefail
tools="${REPLICATOR_TOOLS:-/var/tmp/replicator-tools}"

if ! command -v moto_server >/dev/null 2>&1 \
    || ! python3 -c 'import boto3, azure.storage.blob, pika, aiosmtpd' >/dev/null 2>&1; then
    echo "== installing moto[server], boto3, azure-storage-blob, pika, aiosmtpd (pip)"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' boto3 azure-storage-blob 'pika>=1.3' 'aiosmtpd>=1.4' 
fi

if [ ! -x "$tools/node_modules/.bin/azurite-blob" ]; then
    echo "== installing azurite (npm) into $tools"
    mkdir -p "$tools"
    (cd "$tools" && npm install --no-audit --no-fund --silent azurite@3)
fi
