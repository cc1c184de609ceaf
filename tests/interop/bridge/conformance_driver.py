"""`--command` for `@modelcontextprotocol/conformance client`, with switchboard's
bridge in the path:

    conformance suite --HTTP-- switchboard bridge --transport mcp --stdio-- this script (official `mcp` SDK)

The suite runs `<command> <server-url>` (URL last) with MCP_CONFORMANCE_SCENARIO
set (and MCP_CONFORMANCE_CONTEXT, a JSON object, for scenarios that hand the client
test data); this script starts the bridge on that URL and performs the scenario's
actions over stdio. The bridge command comes from SWITCHBOARD_BRIDGE_CMD
(shell words, default: this checkout's `target/release/switchboard bridge`);
the URL and `--transport mcp` are appended, and `--protocol P` when
SWITCHBOARD_BRIDGE_PROTOCOL is set (the 2026-07-28 scenarios run with `modern`).
Credentials reach the bridge through the environment only.

The host side answers elicitations (the bridge asks them when a modern server
returns an InputRequiredResult) by accepting with `{"confirmed": true}`.

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
from mcp import types

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
PROTOCOL = os.environ.get("SWITCHBOARD_BRIDGE_PROTOCOL", "")
ARGS = CMD[1:] + ["--transport", "mcp", "--url", URL] + (["--protocol", PROTOCOL] if PROTOCOL else [])
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
# The 2026-07-28 client scenarios: the host lists and uses everything the scenario
# server offers; the bridge turns each request into a modern one.
MODERN = {
    "request-metadata",
    "http-standard-headers",
    "http-custom-headers",
    "http-invalid-tool-headers",
    "sep-2322-client-request-state",
}


async def elicit(_context, _params):
    return types.ElicitResult(action="accept", content={"confirmed": True})


async def use_everything(s: ClientSession, tools) -> None:
    calls = CONTEXT.get("toolCalls")
    if calls:
        for call in calls:
            res = await s.call_tool(call["name"], call.get("arguments") or {})
            print(call["name"], "isError:", res.is_error)
        return
    for tool in tools:
        try:
            res = await s.call_tool(tool.name, {"region": "us-west1"} if tool.name == "valid_tool" else {})
            print(tool.name, "isError:", res.is_error, [getattr(c, "text", None) for c in res.content])
        except Exception as e:  # a scenario server may refuse: the checks are on the wire
            print(tool.name, "failed:", e)
    if SCENARIO != "http-standard-headers":
        return
    for resource in (await s.list_resources()).resources:
        await s.read_resource(resource.uri)
        print("read", resource.uri)
    for prompt in (await s.list_prompts()).prompts:
        await s.get_prompt(prompt.name, {})
        print("got prompt", prompt.name)


async def main() -> int:
    async with stdio_client(BRIDGE) as (read, write):
        async with ClientSession(read, write, elicitation_callback=elicit) as s:
            init = await s.initialize()
            print("initialized:", init.protocol_version, init.server_info.name)
            tools = (await s.list_tools()).tools
            print("tools:", [t.name for t in tools])
            if SCENARIO == "tools_call":
                if any(t.name == "add_numbers" for t in tools):
                    res = await s.call_tool("add_numbers", {"a": 5, "b": 3})
                    print("add_numbers:", res.content[0].text, "isError:", res.is_error)
            elif SCENARIO in MODERN:
                await use_everything(s, tools)
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
