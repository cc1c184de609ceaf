"""Drives `switchboard bridge` over stdio with the official Python SDK (`mcp` on
PyPI), as Claude Desktop would: initialize, tools/list, tools/call of `echo`
{"text": "hi"}; prints what it got.

    SWITCHBOARD_TOKEN=... python py_drive_bridge.py http://127.0.0.1:8080 [legacy|mcp] [--expire-between CMD]

A manual tool (run.sh runs bridge_checks.py, which covers this and more). The
bridge command comes from SWITCHBOARD_BRIDGE_CMD (shell words, default: this
checkout's `target/release/switchboard bridge`). Credentials are passed to the
bridge through the environment (SWITCHBOARD_TOKEN / SWITCHBOARD_CREDENTIALS),
never argv.
`--expire-between CMD` runs the shell command CMD between two echo calls (for
example one that deletes the session from Redis) to check that the second call
still succeeds through a fresh session.
"""

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
import time

from mcp import ClientSession, StdioServerParameters, stdio_client

args = sys.argv[1:]
expire_cmd = None
if "--expire-between" in args:
    i = args.index("--expire-between")
    expire_cmd = args[i + 1]
    del args[i : i + 2]
URL = args[0] if args else "http://127.0.0.1:8080"
TRANSPORT = args[1] if len(args) > 1 else "legacy"
DEFAULT_CMD = shlex.quote(str(Path(__file__).resolve().parents[3] / "target" / "release" / "switchboard")) + " bridge"
CMD = shlex.split(os.environ.get("SWITCHBOARD_BRIDGE_CMD", DEFAULT_CMD))
ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "RUST_LOG", "SWITCHBOARD_TOKEN", "SWITCHBOARD_CREDENTIALS")}
BRIDGE = StdioServerParameters(command=CMD[0], args=CMD[1:] + ["--url", URL, "--transport", TRANSPORT], env=ENV)


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")


async def main() -> int:
    t0 = time.perf_counter()
    async with stdio_client(BRIDGE) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            t_init = time.perf_counter()
            print("initialize:", init.protocol_version, init.server_info.name, init.server_info.version,
                  f"({(t_init - t0) * 1000:.1f} ms from launch)")
            tools = await session.list_tools()
            print("tools:", [t.name for t in tools.tools])
            t1 = time.perf_counter()
            res = await session.call_tool("echo", {"text": "hi"})
            print("echo:", json.dumps(text_of(res)), "isError:", res.is_error,
                  f"({(time.perf_counter() - t1) * 1000:.1f} ms)")
            ok = not res.is_error
            if expire_cmd:
                subprocess.run(expire_cmd, shell=True, check=True)
                res = await session.call_tool("echo", {"text": "hi again"})
                print("echo after expiry:", json.dumps(text_of(res)), "isError:", res.is_error)
                ok = ok and not res.is_error
    return 0 if ok else 1


sys.exit(asyncio.run(main()))
