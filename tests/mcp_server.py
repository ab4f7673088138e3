"""An MCP server built with the official Python SDK (`mcp` 2.x), for deputy's MCP-client tests.

Usage: python mcp_server.py stdio
       python mcp_server.py http PORT
Every call is appended to calls.log in the working directory, so a test can tell a tool ran
and how many times.
"""

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("deputy-test-server")


def log(line: str) -> None:
    with open("calls.log", "a") as f:
        f.write(line + "\n")


@server.tool(description="Add two integers and return the sum.")
def add(a: int, b: int) -> str:
    log(f"add {a} {b}")
    return str(a + b)


@server.tool(description="The names of the environment variables this server can see.")
def env_names() -> str:
    log("env_names")
    return " ".join(sorted(os.environ))


@server.tool(description="The Authorization and X-Client headers of the request (HTTP only).")
def whoami(ctx: Context) -> str:
    log("whoami")
    h = ctx.headers or {}
    return f"{h.get('authorization', '-')} {h.get('x-client', '-')}"


@server.tool(description="Exits the server at once (for crash tests).")
def crash() -> str:
    log("crash")
    sys.stderr.write("fatal: out of coffee\n")
    sys.stderr.flush()
    os._exit(7)


@server.tool(description="Never returns (for timeout tests).")
async def hang() -> str:
    log("hang")
    await anyio.sleep(3600)
    return "unreachable"


def secret_door() -> str:
    """Opens only after unlock."""
    log("secret_door")
    return "the door is open"


@server.tool(description="Adds the tool secret_door and tells the client the tool list changed.")
async def unlock(ctx: Context) -> str:
    log("unlock")
    server.add_tool(secret_door, name="secret_door")
    # Clients on the 2025 protocol (deputy's rmcp negotiates 2025-11-25) get the
    # notification on the session; `subscriptions/listen` subscribers through the bus.
    await ctx.session.send_tool_list_changed()
    await ctx.notify_tools_changed()
    return "unlocked"


if __name__ == "__main__":
    with open("starts.log", "a") as f:
        f.write(f"{os.getpid()}\n")
    if sys.argv[1] == "http":
        anyio.run(lambda: server.run_streamable_http_async(port=int(sys.argv[2])))
    else:
        server.run("stdio")
