"""The bridge checks of issue 4, against real workers sharing a real Redis.

Run by run.sh (which starts redis-server and workers a and b through stack.sh and
exports STACK, the directory holding bin/switchboard, stack.env, pids/ and logs/).
The bridge under test is SWITCHBOARD_BRIDGE_CMD (shell words; default
`$STACK/bin/switchboard bridge`; tests/interop/windows runs the Windows binary under
Wine this way) with `--transport BRIDGE_TRANSPORT` when that is set (the check names
then start with it). The workers are always $STACK/bin/switchboard.
Each check prints `PASS name: detail` or `FAIL name: detail`; figures are printed
as `FIGURE ...` and are never asserted. Exit status 1 if any check failed.

    python bridge_checks.py [check ...]      # default: all, in order

checks: sdk, session-deleted, gateway-down, malformed, figures
"""

import asyncio
import contextlib
import http.client
import json
import os
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

STACK = Path(os.environ["STACK"])
SB = str(STACK / "bin" / "switchboard")
STACK_SH = str(Path(__file__).with_name("stack.sh"))
ENV = dict(line.split("=", 1) for line in (STACK / "stack.env").read_text().split())
REDIS_PORT = ENV["REDIS_PORT"]
URL_A = f"http://127.0.0.1:{ENV['WORKER_A_PORT']}"
URL_B = f"http://127.0.0.1:{ENV['WORKER_B_PORT']}"
TRANSPORT = os.environ.get("BRIDGE_TRANSPORT", "")
BRIDGE = shlex.split(os.environ.get("SWITCHBOARD_BRIDGE_CMD") or f"{shlex.quote(SB)} bridge") + (
    ["--transport", TRANSPORT] if TRANSPORT else [])
# What the bridge gets: credentials through the environment only, never argv (and
# Wine's own settings, WINEPREFIX and WINEDEBUG, when the bridge runs under Wine).
BRIDGE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SWITCHBOARD_TOKEN": "demo", "RUST_LOG": "info",
              **{k: v for k, v in os.environ.items() if k.startswith("WINE")}}
# A session is the hash `prefix{id}`, with siblings `prefix{id}:cache`, `…:log`,
# `…:lock:…` in the same Cluster slot; shared values are `prefix shared:…`.
SESSION_PATTERN = "switchboard:{*}"
GATEWAY_TIMEOUT = 5  # --timeout-secs given to the bridge in the gateway-down check

results: list[tuple[str, bool]] = []


def check(name: str, ok: bool, detail: str = "") -> bool:
    name = f"{TRANSPORT} {name}" if TRANSPORT else name
    results.append((name, ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    return ok


def figure(text: str) -> None:
    print(f"FIGURE {text}", flush=True)


def bridge_log(tag: str):
    return open(STACK / "logs" / f"bridge-{tag}.log", "a")


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if c.type == "text")


def redis(*args: str) -> str:
    return subprocess.run(["redis-cli", "-p", REDIS_PORT, *args], check=True, capture_output=True,
                          text=True).stdout


def session_keys() -> list[str]:
    return sorted(redis("--scan", "--pattern", SESSION_PATTERN).split())


def stack(*args: str) -> None:
    subprocess.run(["bash", STACK_SH, *args], check=True, stdout=sys.stderr)


@contextlib.asynccontextmanager
async def sdk_bridge(url: str, tag: str, *extra: str):
    """The official SDK's stdio client driving `switchboard bridge --url URL`."""
    params = StdioServerParameters(command=BRIDGE[0], args=[*BRIDGE[1:], "--url", url, *extra], env=BRIDGE_ENV)
    with bridge_log(tag) as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                yield session


# --- 1. the SDK drives the bridge (legacy) ------------------------------------

async def check_sdk() -> None:
    async with sdk_bridge(URL_A, "sdk") as s:
        init = await s.initialize()
        check("sdk: initialize", bool(init.protocol_version),
              f"protocol {init.protocol_version}, server {init.server_info.name} {init.server_info.version}")
        names = [t.name for t in (await s.list_tools()).tools]
        check("sdk: tools/list contains survey_summary", "survey_summary" in names, f"{names}")
        res = await s.call_tool("echo", {"text": "hi"})
        check("sdk: tools/call echo {text: hi}", not res.is_error and text_of(res) == "hi",
              f"isError={res.is_error} text={text_of(res)!r}")
        surveys = await s.call_tool("list_surveys", {})
        ids = [row["survey"] for row in (surveys.structured_content or {}).get("surveys", [])]
        survey = ids[0] if ids else "support-q3"
        res = await s.call_tool("survey_summary", {"survey": survey})
        check("sdk: tools/call survey_summary", not res.is_error and bool(res.structured_content),
              f"survey {survey}: {json.dumps(res.structured_content)[:160]}")


# --- 2. the session is deleted from Redis between two calls -------------------

async def check_session_deleted() -> None:
    redis("FLUSHDB")  # our own redis-server: start from no sessions at all
    async with sdk_bridge(URL_B, "session-deleted") as s:
        await s.initialize()
        first = await s.call_tool("echo", {"text": "before"})
        before = session_keys()
        check("session-deleted: first call opens one session",
              not first.is_error and len(before) == 1, f"isError={first.is_error} sessions={len(before)}")
        for key in before:  # the session and every key of it
            redis("DEL", *redis("--scan", "--pattern", key + "*").split())
        second = await s.call_tool("echo", {"text": "after"})
        after = session_keys()
        check("session-deleted: next call still succeeds", not second.is_error and text_of(second) == "after",
              f"isError={second.is_error} text={text_of(second)!r}")
        # Over --transport mcp the bridge speaks the modern era to this gateway: its record is
        # the principal's, so the one recreated has the same key (derived from the token).
        renewed = after != before or TRANSPORT == "mcp"
        check("session-deleted: exactly one new session exists",
              len(after) == 1 and renewed, f"{len(before)} deleted, {len(after)} now, new={after != before}")


# --- 3. the gateway is stopped, then started again -----------------------------

async def timed_call(s: ClientSession, text: str):
    t0 = time.monotonic()
    res = await s.call_tool("echo", {"text": text})
    return res, time.monotonic() - t0


async def check_gateway_down() -> None:
    async with sdk_bridge(URL_A, "gateway-down", "--timeout-secs", str(GATEWAY_TIMEOUT)) as s:
        await s.initialize()
        res, _ = await timed_call(s, "up")
        check("gateway-down: call before stopping", not res.is_error, f"text={text_of(res)!r}")

        stack("stop-worker", "a")
        res, took = await timed_call(s, "down")
        check("gateway-down: worker killed -> isError 'unreachable' within the timeout",
              res.is_error is True and "unreachable" in text_of(res) and took < GATEWAY_TIMEOUT + 1,
              f"{took:.2f}s, isError={res.is_error}: {text_of(res)!r}")
        stack("start-worker", "a")
        res, took = await timed_call(s, "back")
        check("gateway-down: worker restarted -> next call works, same bridge",
              not res.is_error and text_of(res) == "back", f"{took * 1000:.0f} ms, text={text_of(res)!r}")

        # A gateway that accepts connections but never answers (SIGSTOP): the
        # configured timeout is what bounds the call.
        pid = int(subprocess.run(["bash", STACK_SH, "pid", "worker-a"], check=True, capture_output=True,
                                 text=True).stdout)
        os.kill(pid, signal.SIGSTOP)
        try:
            res, took = await timed_call(s, "hung")
        finally:
            os.kill(pid, signal.SIGCONT)
        check("gateway-down: worker hung -> isError within --timeout-secs",
              res.is_error is True and took < GATEWAY_TIMEOUT + 1.5,
              f"{took:.2f}s (timeout {GATEWAY_TIMEOUT}s), isError={res.is_error}: {text_of(res)!r}")
        res, took = await timed_call(s, "resumed")
        check("gateway-down: worker resumed -> next call works", not res.is_error and text_of(res) == "resumed",
              f"{took * 1000:.0f} ms")


# --- 4. malformed lines on stdin (raw stdio, no SDK) ----------------------------

class RawBridge:
    """`switchboard bridge` on plain pipes, one JSON-RPC line at a time."""

    def __init__(self, url: str, tag: str, *extra: str) -> None:
        self.log = bridge_log(tag)
        self.proc = subprocess.Popen([*BRIDGE, "--url", url, *extra], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=BRIDGE_ENV, bufsize=0)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str | dict) -> None:
        text = line if isinstance(line, str) else json.dumps(line)
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 10.0):
        """The next line as JSON (None on EOF); raises queue.Empty after `timeout`."""
        line = self.lines.get(timeout=timeout)
        return None if line is None else json.loads(line)

    def request(self, id_, method: str, params: dict | None = None, timeout: float = 10.0):
        msg = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.recv(timeout)

    def initialize(self):
        reply = self.request(0, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                               "clientInfo": {"name": "bridge_checks", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return reply

    def close(self, timeout: float = 5.0):
        """Closes stdin (how hosts stop a server) and returns the exit code (None if it had to be killed)."""
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.log.close()


def error_code(msg) -> int | None:
    return (msg or {}).get("error", {}).get("code")


def check_malformed() -> None:
    b = RawBridge(URL_A, "malformed")
    try:
        init = b.initialize()
        check("malformed: initialize", "result" in (init or {}), f"{json.dumps(init)[:120]}")

        b.send("this is not json {")
        reply = b.recv()
        check("malformed: not JSON -> -32700, id null", error_code(reply) == -32700 and reply.get("id") is None,
              json.dumps(reply))

        b.send({"jsonrpc": "2.0", "id": "never-asked", "result": {"surprise": True}})
        reply = b.request(2, "ping")
        check("malformed: unsolicited response ignored (next line answers the ping)",
              reply == {"jsonrpc": "2.0", "id": 2, "result": {}}, json.dumps(reply))

        reply = b.request(3, "no/such/method", {})
        check("malformed: unknown method -> -32601", error_code(reply) == -32601 and reply.get("id") == 3,
              json.dumps(reply))

        b.send({"jsonrpc": "2.0", "method": "notifications/no-such-thing"})
        b.send({"not": "json-rpc"})
        reply = b.recv()
        check("malformed: JSON that is not JSON-RPC -> -32600 (unknown notification: no answer)",
              error_code(reply) == -32600, json.dumps(reply))

        reply = b.request(4, "tools/call", {"name": "echo", "arguments": {"text": "still serving"}}, timeout=30)
        content = ((reply or {}).get("result") or {}).get("content") or [{}]
        check("malformed: keeps serving (tools/call echo afterwards)",
              content[0].get("text") == "still serving", json.dumps(reply)[:160])

        extra = []
        with contextlib.suppress(queue.Empty):
            while (line := b.recv(timeout=0.5)) is not None:
                extra.append(line)
        check("malformed: no unexpected output", not extra, json.dumps(extra)[:200])
    finally:
        code = b.close()
    check("malformed: exits 0 on stdin EOF", code == 0, f"exit code {code}")


# --- 5. figures: start-up and added latency -----------------------------------

def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def fmt_ms(samples: list[float]) -> str:
    return (f"p50 {pct(samples, 50) * 1000:.2f} ms, p90 {pct(samples, 90) * 1000:.2f} ms, "
            f"min {min(samples) * 1000:.2f} ms")


class Direct:
    """`POST /call-tool` on one keep-alive connection, as the bridge does."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.session = self.post("/init", {"credentials": {"token": "demo"}}, None)["session_id"]

    def post(self, path: str, body: dict, session: str | None):
        headers = {"Content-Type": "application/json"}
        if session:
            headers["Mcp-Session-Id"] = session
        self.conn.request("POST", path, json.dumps(body), headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status} {data[:200]!r}")
        return json.loads(data)

    def call(self, text: str):
        return self.post("/call-tool", {"tool": "echo", "arguments": {"text": text}}, self.session)


def check_figures(launches: int = 20, calls: int = 200) -> None:
    init_line = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "figures", "version": "0"}}})
    startup = []
    with bridge_log("figures") as log:
        for _ in range(launches):
            t0 = time.perf_counter()
            proc = subprocess.Popen([*BRIDGE, "--url", URL_A], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, env=BRIDGE_ENV, bufsize=0)
            proc.stdin.write(init_line.encode() + b"\n")
            line = proc.stdout.readline()
            startup.append(time.perf_counter() - t0)
            proc.stdin.close()
            proc.wait(10)
            if b'"result"' not in line:
                check("figures: bridge answers initialize", False, line[:200].decode(errors="replace"))
                return
    figure(f"bridge start-to-first-response (spawn -> initialize answered), {launches} launches: "
           f"median {statistics.median(startup) * 1000:.2f} ms, min {min(startup) * 1000:.2f} ms, "
           f"max {max(startup) * 1000:.2f} ms")

    direct = Direct(URL_A)
    b = RawBridge(URL_A, "figures")
    try:
        b.initialize()
        for mode in ("same arguments", "distinct arguments"):
            # same: the worker may answer from the session's result cache (echo is
            # readOnly+idempotent), so the bridge's own cost stands out; distinct: a
            # fresh demo-server for every call. Direct and bridged calls alternate so
            # that drift in the machine's load hits both series alike.
            arg = (lambda i: "bench") if mode == "same arguments" else (lambda i: f"d-{i}-{time.time_ns()}")
            for i in range(5):  # warm-up: connections, the cache entry
                direct.call(arg(i))
                b.request(10_000 + i, "tools/call", {"name": "echo", "arguments": {"text": arg(i)}}, timeout=30)
            d, via, hits = [], [], 0
            for i in range(calls):
                t0 = time.perf_counter()
                hits += bool(direct.call(arg(i)).get("cached"))
                d.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                reply = b.request(i + 1, "tools/call", {"name": "echo", "arguments": {"text": arg(i)}}, timeout=30)
                via.append(time.perf_counter() - t0)
                if "result" not in (reply or {}) or reply["result"].get("isError"):
                    raise RuntimeError(f"bridge call failed: {reply}")
            added = (pct(via, 50) - pct(d, 50)) * 1000
            figure(f"tools/call echo, {mode} ({hits}/{calls} direct calls were cache hits), {calls} calls each, "
                   f"concurrency 1: direct /call-tool {fmt_ms(d)}; through the bridge {fmt_ms(via)}; "
                   f"added by the bridge at p50: {added:+.2f} ms")
    finally:
        b.close()
        direct.conn.close()


def bounded(check_fn, secs: float = 120):
    """Runs an async check with an overall bound, so a hang fails instead of stalling CI."""
    return lambda: asyncio.run(asyncio.wait_for(check_fn(), secs))


CHECKS = {
    "sdk": bounded(check_sdk),
    "session-deleted": bounded(check_session_deleted),
    "gateway-down": bounded(check_gateway_down),
    "malformed": check_malformed,
    "figures": check_figures,
}


def main() -> int:
    for name in sys.argv[1:] or list(CHECKS):
        try:
            CHECKS[name]()
        except Exception as e:  # one broken check must not hide the others
            check(f"{name}: ran to completion", False, f"{type(e).__name__}: {e}")
    failed = [n for n, ok in results if not ok]
    print(f"bridge checks: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
