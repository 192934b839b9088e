#!/usr/bin/env bash
# Starts the local Kafka broker and PostgreSQL cluster (idempotent) and prints their addresses:
#   KAFKA=localhost:9092
#   POSTGRES=postgresql+asyncpg://docloop:docloop@127.0.0.1:5433/docloop
# It also writes them as DOCLOOP_KAFKA_BOOTSTRAP / DOCLOOP_DATABASE_URL to $DOCLOOP_STATE/env
# (default /tmp/docloop-local/env), for `set -a; . /tmp/docloop-local/env; set +a`.
# Honours the env vars of kafka.sh and postgres.sh (DOCLOOP_STATE, DOCLOOP_CACHE, DOCLOOP_KAFKA_PORT,
# DOCLOOP_KAFKA_SCRAM_PORT, DOCLOOP_PG_PORT, ...).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

postgres_url=$("$here/postgres.sh" start)
kafka_bootstrap=$("$here/kafka.sh" start)

state=${DOCLOOP_STATE:-/tmp/docloop-local}
printf 'DOCLOOP_KAFKA_BOOTSTRAP=%s\nDOCLOOP_DATABASE_URL=%s\n' "$kafka_bootstrap" "$postgres_url" >"$state/env"

echo "KAFKA=$kafka_bootstrap"
echo "POSTGRES=$postgres_url"
