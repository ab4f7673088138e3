//! `deputy mcp`: deputy's agents served as MCP tools over stdio, so any MCP client can hand a
//! task to a deputy subagent. A front-end over deputy-runtime; stdout is the protocol.
