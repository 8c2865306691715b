#!/usr/bin/env bash
# A CI job: claims three ports, starts services on them, checks them, and gives the ports
# back however it ends. Run through `npm run ci` (or with node_modules/.bin on PATH, not
# through npx, which adds its own start-up to every call).
set -euo pipefail

# A plain assignment keeps the exit code of its $(...), so under `set -e` a failed claim
# ends the job with portlease's own code: 2 bad usage, 3 no free ports, 4 lock timeout.
# (`read ... < <(portlease claim ...)` loses it: read fails with 1 whatever went wrong.)
ports=$(portlease claim --count 3 --host 127.0.0.1 --base "${BASE_PORT:-8100}" --label "ci-${CI_JOB_ID:-local}")
# The claim belongs to this shell; stop the services and give the ports back however the job ends.
services=()
trap 'kill "${services[@]}" 2>/dev/null || true; portlease release >/dev/null' EXIT
read -r API_PORT DB_PORT METRICS_PORT <<<"$ports"

node server.js db "$DB_PORT" & services+=($!)
node server.js api "$API_PORT" & services+=($!)
node server.js metrics "$METRICS_PORT" & services+=($!)
node check.js "$API_PORT" "$DB_PORT" "$METRICS_PORT"
echo "job ${CI_JOB_ID:-local}: api $API_PORT db $DB_PORT metrics $METRICS_PORT"
