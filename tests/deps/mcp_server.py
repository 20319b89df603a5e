#!/usr/bin/env python3
"""An MCP server written with the official MCP Python SDK (PyPI `mcp`, FastMCP), served over
streamable HTTP on 127.0.0.1 for the MCP end-to-end test (tests/tests/mcp.rs).

It binds port 0 itself (the kernel picks a free one), prints the port on the first line of
stdout, then serves `/mcp` until killed. Every tool call is also written to stderr as
`mcp_server: called <tool> <arguments>`, so the test log shows what reached the server.

Tools:
- `tide_table(harbour)`: a result computed here (the harbour's name reversed and the server's
  pid), so the test knows the answer came from this process;
- `drop_anchor()`: offered, but the test does not allow it;
- `sink()`: raises, which the SDK answers as a result with `isError`.
"""

import asyncio
import os
import socket
import sys

import uvicorn
from mcp.server.fastmcp import FastMCP

server = FastMCP("harbour", log_level="WARNING")


def note(tool, arguments):
    sys.stderr.write(f"mcp_server: called {tool} {arguments}\n")
    sys.stderr.flush()


@server.tool()
def tide_table(harbour: str) -> str:
    """The tide table of a harbour."""
    note("tide_table", {"harbour": harbour})
    return f"high tide at {harbour[::-1]} (from the SDK server, pid {os.getpid()})"


@server.tool()
def drop_anchor() -> str:
    """Drops the anchor. Not allowed by the test's group."""
    note("drop_anchor", {})
    return "anchor dropped"


@server.tool()
def sink() -> str:
    """Always fails."""
    note("sink", {})
    raise RuntimeError("the ship sank")


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[listener]))


if __name__ == "__main__":
    main()
