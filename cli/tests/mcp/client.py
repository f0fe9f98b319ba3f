"""An MCP client for the tests, on the official Python SDK (PyPI `mcp` 2.3.0).

    python client.py http URL TOKEN TOOL ARGS_JSON
    python client.py stdio TOOL ARGS_JSON -- COMMAND [ARGS...]

Initializes, lists the tools, calls TOOL with ARGS_JSON, and prints one JSON line:
{"server": ..., "tools": [names], "result": {"is_error": bool, "structured": ..., "text": [...]}}.
A transport or protocol failure prints {"failure": "..."} and exits 3.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


async def exercise(session, tool, args):
    init = await session.initialize()
    tools = await session.list_tools()
    result = await session.call_tool(tool, args)
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    return {
        "server": init.server_info.name,
        "protocol": init.protocol_version,
        "tools": [t.name for t in tools.tools],
        "schemas": {t.name: t.input_schema for t in tools.tools},
        "result": {"is_error": bool(result.is_error), "structured": result.structured_content, "text": texts},
    }


async def http(url, token, tool, args):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                return await exercise(session, tool, args)


async def stdio(tool, args, command):
    # The SDK passes the server only a few safe variables unless told: hand it ours.
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            return await exercise(session, tool, args)


def main():
    mode = sys.argv[1]
    try:
        if mode == "http":
            url, token, tool, args = sys.argv[2:6]
            out = asyncio.run(http(url, token, tool, json.loads(args)))
        else:
            tool, args = sys.argv[2:4]
            command = sys.argv[sys.argv.index("--") + 1:]
            out = asyncio.run(stdio(tool, json.loads(args), command))
    except BaseException as error:  # noqa: BLE001 - report any failure to the test
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        print(json.dumps({"failure": f"{type(error).__name__}: {error}"}))
        sys.exit(3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
