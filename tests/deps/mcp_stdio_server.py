#!/usr/bin/env python3
"""A small MCP server over stdio (newline-delimited JSON-RPC), standard library only, so it runs
in the toolbox image's python3 without the SDK. The crabpot MCP tests copy it into a group folder
and declare it in mcp.json.

Tools: `shout(text)` returns the text upper-cased with the server's pid and working directory
(so a test sees a real result computed here, in the container's workspace), `whisper(text)` is
offered but the tests do not allow it, and `fail()` returns an `isError` result.
"""

import json
import os
import sys

TOOLS = [
    {
        "name": "shout",
        "description": "Returns the text in capitals, with where the server runs.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string", "title": "Text"}},
            "required": ["text"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    },
    {
        "name": "whisper",
        "description": "Returns the text in lower case.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
    {
        "name": "fail",
        "description": "Always fails.",
        "inputSchema": {"type": "object"},
    },
]


def result(call):
    name = call.get("name")
    args = call.get("arguments") or {}
    if name == "shout":
        text = str(args.get("text", "")).upper()
        return {"content": [{"type": "text", "text": f"{text}! (pid {os.getpid()}, cwd {os.getcwd()}, X={os.environ.get('MCP_TEST_X', '')})"}]}
    if name == "whisper":
        return {"content": [{"type": "text", "text": str(args.get("text", "")).lower()}]}
    if name == "fail":
        return {"content": [{"type": "text", "text": "it failed on purpose"}], "isError": True}
    return {"content": [{"type": "text", "text": f"unknown tool {name}"}], "isError": True}


def answer(request):
    method = request.get("method")
    params = request.get("params") or {}
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "crabpot-test-stdio", "version": "1"},
        }
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call":
        return result(params)
    if method == "ping":
        return {}
    return None


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    request = json.loads(line)
    if "id" not in request or "method" not in request:
        continue  # a notification or a response: nothing to say
    body = answer(request)
    if body is None:
        reply = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "method not found"}}
    else:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": body}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
