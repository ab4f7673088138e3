"""A real MCP client (the official Python SDK) driving `deputy mcp`.

Usage: python mcp_client.py DEPUTY_BIN WORKSPACE
The model (deputy-mockllm) is configured through the environment (OPENAI_BASE_URL,
DEPUTY_MODEL, DEPUTY_HOME). Prints one JSON object with what it observed; exits non-zero
on any failed check.
"""

import asyncio
import json
import os
import sys

import jsonschema
from mcp import ClientSession, StdioServerParameters, stdio_client


async def main() -> None:
    deputy, workspace = sys.argv[1], sys.argv[2]
    params = StdioServerParameters(
        command=deputy,
        args=["mcp"],
        env={k: v for k, v in os.environ.items()},
        cwd=workspace,
    )
    report = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            report["server"] = init.server_info.name

            tools = (await session.list_tools()).tools
            names = [t.name for t in tools]
            report["tools"] = names
            assert "backend-architect" in names, names
            assert "deputy_reply" in names, names
            ba = next(t for t in tools if t.name == "backend-architect")
            # A valid JSON Schema, with prompt required.
            jsonschema.Draft202012Validator.check_schema(ba.input_schema)
            assert ba.input_schema["type"] == "object"
            assert "prompt" in ba.input_schema["required"], ba.input_schema
            assert set(ba.input_schema["properties"]) >= {"prompt", "workspace", "model", "max_steps", "timeout_s"}
            report["description"] = ba.description

            progress = []

            async def on_progress(value, total, message):
                progress.append(message)

            result = await session.call_tool(
                "backend-architect",
                {"prompt": "single: say hello", "max_steps": 5},
                progress_callback=on_progress,
            )
            assert not result.is_error, result
            report["text"] = result.content[0].text
            report["structured"] = result.structured_content
            report["progress"] = progress

            # Two calls in flight at once.
            a, b = await asyncio.gather(
                session.call_tool("backend-architect", {"prompt": "parallel A"}),
                session.call_tool("backend-architect", {"prompt": "parallel B"}),
            )
            report["parallel"] = [a.content[0].text, b.content[0].text]

            # Continue the first session.
            sid = report["structured"]["session_id"]
            reply = await session.call_tool("deputy_reply", {"session_id": sid, "prompt": "and more?"})
            report["reply"] = reply.content[0].text

            bad = await session.call_tool("deputy_reply", {"session_id": "nope", "prompt": "x"})
            report["bad_reply_is_error"] = bool(bad.is_error)

            # A workspace outside the server's roots is refused before anything runs.
            outside = os.environ["DEPUTY_TEST_OUTSIDE"]
            escapes = []
            for ws in [outside, "/", "../../..", workspace + "/../.."]:
                r = await session.call_tool("backend-architect", {"prompt": "escape: write it", "workspace": ws})
                escapes.append({"error": bool(r.is_error), "text": r.content[0].text})
            report["escapes"] = escapes
    print(json.dumps(report))


asyncio.run(main())
