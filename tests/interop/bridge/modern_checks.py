"""The bridge in the modern era (2026-07-28) against a real modern server: the official
Python SDK 2.x (py_modern_server.py), driven over stdio by the same SDK as a legacy
host, as Claude Desktop drives the bridge.

    python modern_checks.py

The bridge command is SWITCHBOARD_BRIDGE_CMD (shell words; default: this checkout's
target/release/switchboard bridge). For `--protocol modern` and `--protocol auto`:
initialize (answered from the server's server/discover), tools/list, tools/call, and a
call whose server asks the user (an InputRequiredResult the bridge turns into an
elicitation of the host, then retries with the answer and the requestState). With
auto, the bridge's log must say it found the modern era. Prints `PASS name: detail` or
`FAIL name: detail`; exit status 1 if any check failed.
"""

import asyncio
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp import types

HERE = Path(__file__).resolve().parent
DEFAULT_CMD = shlex.quote(str(HERE.parents[2] / "target" / "release" / "switchboard")) + " bridge"
CMD = shlex.split(os.environ.get("SWITCHBOARD_BRIDGE_CMD", DEFAULT_CMD))
failed = 0


def report(ok: bool, name: str, detail: str) -> None:
    global failed
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    failed += 0 if ok else 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def elicit(_context, params):
    return types.ElicitResult(action="accept", content={"confirmed": True})


async def drive(url: str, protocol: str, log: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "info"}
    args = CMD[1:] + ["--transport", "mcp", "--url", url, "--protocol", protocol]
    bridge = StdioServerParameters(command=CMD[0], args=args, env=env)
    with log.open("w") as errlog:
        async with stdio_client(bridge, errlog=errlog) as (read, write):
            async with ClientSession(read, write, elicitation_callback=elicit) as s:
                init = await s.initialize()
                name = init.server_info.name
                report(name == "py-dual-era-demo", f"{protocol} initialize", f"{init.protocol_version} {name}")
                tools = sorted(t.name for t in (await s.list_tools()).tools)
                report(tools == ["add", "confirm"], f"{protocol} tools/list", str(tools))
                res = await s.call_tool("add", {"a": 2, "b": 3})
                text = res.content[0].text if res.content else None
                report(text == "5" and not res.is_error, f"{protocol} tools/call", f"add(2, 3) = {text}")
                res = await s.call_tool("confirm", {"action": "deploy"})
                text = res.content[0].text if res.content else None
                report(
                    text == "deploy: confirmed" and not res.is_error,
                    f"{protocol} input required",
                    f"the host's elicitation answered, the call retried with the requestState: {text!r}",
                )
    if protocol == "auto":
        found = "era=Modern" in log.read_text()
        report(found, "auto finds the modern era", "server/discover answered: no initialize sent")


def main() -> int:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "py_modern_server.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        with tempfile.TemporaryDirectory() as tmp:
            for protocol in ("modern", "auto"):
                try:
                    asyncio.run(asyncio.wait_for(drive(url, protocol, Path(tmp) / f"{protocol}.log"), 60))
                except Exception as e:  # a broken bridge must fail the check, not hang it
                    report(False, f"{protocol} session", repr(e))
                    log = Path(tmp) / f"{protocol}.log"
                    if log.exists():
                        print(log.read_text()[-3000:])
    finally:
        server.terminate()
        server.wait(10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
