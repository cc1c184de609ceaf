"""`--command` for `@modelcontextprotocol/conformance client`, with switchboard's
bridge in the path:

    conformance suite --HTTP-- switchboard bridge --transport mcp --stdio-- this script (official `mcp` SDK)

The suite runs `<command> <server-url>` (URL last) with MCP_CONFORMANCE_SCENARIO
set; this script starts the bridge on that URL and performs the scenario's
actions over stdio. The bridge command comes from SWITCHBOARD_BRIDGE_CMD
(shell words, default: this checkout's `target/release/switchboard bridge`);
the URL and `--transport mcp` are appended. Credentials reach the bridge
through the environment only.
"""

import asyncio
import os
import shlex
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

URL = sys.argv[-1]
SCENARIO = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
DEFAULT_CMD = shlex.quote(str(Path(__file__).resolve().parents[3] / "target" / "release" / "switchboard")) + " bridge"
CMD = shlex.split(os.environ.get("SWITCHBOARD_BRIDGE_CMD", DEFAULT_CMD))
ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "RUST_LOG", "SWITCHBOARD_TOKEN", "SWITCHBOARD_CREDENTIALS")}
BRIDGE = StdioServerParameters(command=CMD[0], args=CMD[1:] + ["--transport", "mcp", "--url", URL], env=ENV)


async def main() -> None:
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


asyncio.run(main())
