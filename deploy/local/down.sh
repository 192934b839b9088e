#!/usr/bin/env bash
# Stops the local Kafka broker and PostgreSQL cluster started by up.sh (state dirs are kept;
# delete $DOCLOOP_STATE, default /tmp/docloop-local, for a clean slate).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

rc=0
"$here/kafka.sh" stop || rc=1    # try both even if one fails
"$here/postgres.sh" stop || rc=1
exit $rc
