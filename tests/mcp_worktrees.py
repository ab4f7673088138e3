"""The official MCP Python SDK calls one agent of `deputy mcp` twice at once with
`isolation: worktree`, both editing the same file of the workspace's repository.

Usage: python mcp_worktrees.py DEPUTY_BIN WORKSPACE
Prints one JSON object: the two calls' texts and structured results.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client


async def main() -> None:
    deputy, workspace = sys.argv[1], sys.argv[2]
    params = StdioServerParameters(
        command=deputy, args=["mcp"], env=dict(os.environ), cwd=workspace
    )
    report = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            ba = next(t for t in tools if t.name == "backend-architect")
            assert "isolation" in ba.input_schema["properties"], ba.input_schema
            a, b = await asyncio.gather(
                session.call_tool("backend-architect", {"prompt": "wt A", "isolation": "worktree"}),
                session.call_tool("backend-architect", {"prompt": "wt B", "isolation": "worktree"}),
            )
            report["calls"] = [
                {"error": bool(r.is_error), "text": r.content[0].text, "structured": r.structured_content}
                for r in (a, b)
            ]
            look = await session.call_tool("backend-architect", {"prompt": "wt look", "isolation": "worktree"})
            report["look"] = {"text": look.content[0].text, "structured": look.structured_content}
            again = await session.call_tool(
                "deputy_reply", {"session_id": look.structured_content["session_id"], "prompt": "more"}
            )
            report["look_again"] = {"error": bool(again.is_error), "text": again.content[0].text}
    print(json.dumps(report))


asyncio.run(main())
