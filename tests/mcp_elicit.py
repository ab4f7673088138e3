"""`ask` permissions over MCP, driven by the official Python SDK.

Usage: python mcp_elicit.py DEPUTY_BIN WORKSPACE
A client that supports elicitation approves one bash call and refuses the next with a reason;
a client without elicitation gets its `ask` calls denied. Prints one JSON object with what it
observed; exits non-zero on a failed check.
"""

import asyncio
import json
import os
import sys

import mcp.types as types
from mcp import ClientSession, StdioServerParameters, stdio_client


async def main() -> None:
    deputy, workspace = sys.argv[1], sys.argv[2]
    params = StdioServerParameters(
        command=deputy,
        args=["mcp"],
        env={k: v for k, v in os.environ.items()},
        cwd=workspace,
    )
    report = {"asked": []}

    async def on_elicit(context, p):
        report["asked"].append(p.message)
        report["schema"] = p.requested_schema
        if "approved-run" in p.message:
            return types.ElicitResult(action="accept", content={"approve": True})
        return types.ElicitResult(
            action="accept", content={"approve": False, "reason": "not that one"}
        )

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=on_elicit) as session:
            await session.initialize()
            r = await session.call_tool("asker", {"prompt": "elicit please"})
            assert not r.is_error, r
            report["elicit_text"] = r.content[0].text

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            r = await session.call_tool("asker", {"prompt": "no elicitation here"})
            assert not r.is_error, r
            report["plain_text"] = r.content[0].text
    print(json.dumps(report))


asyncio.run(main())
