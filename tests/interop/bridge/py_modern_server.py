"""A dual-era MCP server on the official Python SDK 2.x (MCPServer), Streamable HTTP on
127.0.0.1 only, for the bridge's modern-era checks (modern_checks.py).

    python py_modern_server.py PORT

Tools: `add(a, b)`; `confirm(action)`, whose `ok` argument is resolved by asking the
user (an elicitation: in the 2026-07-28 era an InputRequiredResult, answered by the
client's retry with inputResponses and the requestState).
"""

import sys
from typing import Annotated

from pydantic import BaseModel

from mcp.server.mcpserver import Elicit, MCPServer, Resolve

mcp = MCPServer("py-dual-era-demo")


class Confirm(BaseModel):
    confirmed: bool


def ask(action: str) -> Elicit[Confirm]:
    return Elicit(f"Go ahead with {action}?", Confirm)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def confirm(action: str, ok: Annotated[Confirm, Resolve(ask)]) -> str:
    """Does `action` once the user confirmed it."""
    return f"{action}: {'confirmed' if ok.confirmed else 'declined'}"


if __name__ == "__main__":
    mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
