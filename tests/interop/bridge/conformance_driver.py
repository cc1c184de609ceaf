"""`--command` for `@modelcontextprotocol/conformance client`, with switchboard's
bridge in the path:

    conformance suite --HTTP-- switchboard bridge --transport mcp --stdio-- this script (official `mcp` SDK)

The suite runs `<command> <server-url>` (URL last) with MCP_CONFORMANCE_SCENARIO
set; this script starts the bridge on that URL and performs the scenario's
actions over stdio. The bridge command comes from SWITCHBOARD_BRIDGE_CMD
(shell words, default: this checkout's `target/release/switchboard bridge`);
the URL and `--transport mcp` are appended. Credentials reach the bridge
through the environment only.

`auth/*` scenarios: the bridge runs its OAuth client headless (`--no-browser`,
tokens in memory) with SWITCHBOARD_OAUTH_TEST_FOLLOW_AUTHORIZATION_URL=1, a
test-only switch that makes the bridge GET the authorization URL itself (the
suite's authorization servers approve at once and redirect to the bridge's
loopback listener). A pre-registered client from MCP_CONFORMANCE_CONTEXT
(`client_id`, `client_secret`) is passed as `--oauth-client-id` and
SWITCHBOARD_OAUTH_CLIENT_SECRET; the client ID metadata document URL is the
fixed one the suite expects. The script lists the tools and calls `test-tool`
(the step-up scenario needs a second scope for calls).
"""

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

URL = sys.argv[-1]
SCENARIO = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
CONTEXT = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
DEFAULT_CMD = shlex.quote(str(Path(__file__).resolve().parents[3] / "target" / "release" / "switchboard")) + " bridge"
CMD = shlex.split(os.environ.get("SWITCHBOARD_BRIDGE_CMD", DEFAULT_CMD))
ENV = {
    k: v
    for k, v in os.environ.items()
    if k in ("PATH", "RUST_LOG", "SWITCHBOARD_TOKEN", "SWITCHBOARD_CREDENTIALS") or k.startswith("SWITCHBOARD_OAUTH_")
}
ARGS = CMD[1:] + ["--transport", "mcp", "--url", URL]
# The fixed client ID metadata document URL of the suite's auth/basic-cimd scenario.
CIMD_URL = "https://conformance-test.local/client-metadata.json"
if SCENARIO.startswith("auth/"):
    ARGS += ["--no-browser", "--oauth-store", "memory", "--oauth-wait-secs", "20",
             "--oauth-client-metadata-url", CIMD_URL]
    ENV["SWITCHBOARD_OAUTH_TEST_FOLLOW_AUTHORIZATION_URL"] = "1"
    if CONTEXT.get("client_id"):
        ARGS += ["--oauth-client-id", str(CONTEXT["client_id"])]
    if CONTEXT.get("client_secret"):
        ENV["SWITCHBOARD_OAUTH_CLIENT_SECRET"] = str(CONTEXT["client_secret"])
BRIDGE = StdioServerParameters(command=CMD[0], args=ARGS, env=ENV)


async def main() -> int:
    async with stdio_client(BRIDGE) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            print("initialized:", init.protocol_version, init.server_info.name)
            tools = (await s.list_tools()).tools
            print("tools:", [t.name for t in tools])
            if SCENARIO == "tools_call":
                if any(t.name == "add_numbers" for t in tools):
                    res = await s.call_tool("add_numbers", {"a": 5, "b": 3})
                    print("add_numbers:", res.content[0].text, "isError:", res.is_error)
            elif SCENARIO == "sse-retry":
                if any(t.name == "test_reconnection" for t in tools):
                    res = await s.call_tool("test_reconnection", {})
                    print("test_reconnection:", res.content[0].text, "isError:", res.is_error)
            elif SCENARIO.startswith("auth/"):
                if any(t.name == "test-tool" for t in tools):
                    res = await s.call_tool("test-tool", {})
                    text = res.content[0].text if res.content else ""
                    print("test-tool:", text, "isError:", res.is_error)
                    if res.is_error:
                        return 1
    return 0


try:
    sys.exit(asyncio.run(main()))
except Exception as e:  # an MCP error the scenario provoked: report it, exit non-zero
    print("client error:", repr(e), file=sys.stderr)
    sys.exit(1)
