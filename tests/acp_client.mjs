// An editor's side of ACP, written with the official TypeScript SDK
// (@agentclientprotocol/sdk): it starts `deputy acp`, drives one scenario, and prints what it
// saw as one JSON object on stdout. Every message deputy sends is checked against the
// protocol's own schema (the SDK's generated zod schemas, strict); tests/acp.rs checks what
// the scenario should have done.
//
//   node acp_client.mjs DEPUTY_BIN SCENARIO CWD [SESSION_ID] [-- deputy acp args…]
//
// Scenarios: "task" (a prompt with tool calls and a permission the user allows), "reject"
// (the user rejects it), "cancel" (the prompt is cancelled while a command runs), "load" (a
// journaled session replayed, then prompted again), "modes" (switch agent, then prompt), "fs"
// (a task where the editor offers its files: it answers fs/read_text_file from its unsaved
// buffers, ACP_BUFFERS (JSON, path → text), else from the disk, and fs/write_text_file by
// writing the disk; both follow links, as an editor does).
// ACP_MCP_SERVERS (JSON) is the session's `mcpServers`, as an editor configures them.

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";
import * as schema from "./node_modules/@agentclientprotocol/sdk/dist/v1/schema/zod.gen.js";

const [bin, scenario, cwd, sessionArg, ...rest] = process.argv.slice(2);
const extra = rest[0] === "--" ? rest.slice(1) : rest;
const mcpServers = JSON.parse(process.env.ACP_MCP_SERVERS || "[]");
const buffers = JSON.parse(process.env.ACP_BUFFERS || "{}");

const child = spawn(bin, ["acp", ...extra], { cwd, stdio: ["pipe", "pipe", "inherit"] });
const stream = acp.ndJsonStream(
  Writable.toWeb(child.stdin),
  Readable.toWeb(child.stdout),
);

const seen = {
  updates: [],
  permissions: [],
  stopReasons: [],
  errors: [],
  fsReads: [],
  fsWrites: [],
};
let answer = scenario === "reject" ? "reject_once" : "allow_once";

// What the schema says of a message deputy sent; a mismatch is an error of the run.
function conforms(name, zod, value) {
  const r = zod.safeParse(value);
  if (!r.success) {
    seen.errors.push(`${name} does not match the ACP schema: ${JSON.stringify(r.error.issues)} in ${JSON.stringify(value)}`);
  }
  return value;
}
let onUpdate = () => {};
// The SDK resolves a response at once but handles a notification a few promise steps later, so
// the updates deputy sent before a response may still be on their way when it resolves: let
// them land (all of them are queued by then) before reading what was seen.
const settle = () => new Promise((resolve) => setImmediate(resolve));

const app = acp
  .client()
  .onRequest("session/request_permission", ({ params }) => {
    conforms("session/request_permission", schema.zRequestPermissionRequest, params);
    seen.permissions.push(params);
    return { outcome: { outcome: "selected", optionId: answer } };
  })
  .onRequest("fs/read_text_file", ({ params }) => {
    conforms("fs/read_text_file", schema.zReadTextFileRequest, params);
    seen.fsReads.push(params.path);
    const content = params.path in buffers ? buffers[params.path] : fs.readFileSync(params.path, "utf8");
    return { content };
  })
  .onRequest("fs/write_text_file", ({ params }) => {
    conforms("fs/write_text_file", schema.zWriteTextFileRequest, params);
    seen.fsWrites.push({ path: params.path, content: params.content });
    delete buffers[params.path];
    fs.writeFileSync(params.path, params.content);
    return {};
  })
  .onNotification("session/update", ({ params }) => {
    conforms("session/update", schema.zSessionNotification, params);
    seen.updates.push(params.update);
    onUpdate(params);
  });

function text(kind) {
  return seen.updates
    .filter((u) => u.sessionUpdate === kind && u.content.type === "text")
    .map((u) => u.content.text)
    .join("");
}

try {
  await app.connectWith(stream, async (ctx) => {
    const init = await ctx.request("initialize", {
      protocolVersion: acp.PROTOCOL_VERSION,
      clientCapabilities: scenario === "fs" ? { fs: { readTextFile: true, writeTextFile: true } } : {},
      clientInfo: { name: "deputy-test", version: "1.0.0" },
    });
    seen.initialize = conforms("initialize", schema.zInitializeResponse, init);
    let sessionId;
    if (scenario === "load") {
      seen.load = conforms("session/load", schema.zLoadSessionResponse, await ctx.request("session/load", {
        sessionId: sessionArg,
        cwd,
        mcpServers,
      }));
      await settle();
      sessionId = sessionArg;
      seen.replayed = seen.updates.map((u) => u.sessionUpdate);
      seen.replayedUser = text("user_message_chunk");
      seen.replayedAgent = text("agent_message_chunk");
      seen.updates = [];
    } else {
      const created = conforms(
        "session/new",
        schema.zNewSessionResponse,
        await ctx.request("session/new", { cwd, mcpServers }),
      );
      sessionId = created.sessionId;
      seen.modes = created.modes;
    }
    seen.sessionId = sessionId;
    if (scenario === "modes") {
      await ctx.request("session/set_mode", { sessionId, modeId: "reviewer" });
    }
    if (scenario === "cancel") {
      // Cancel once the command is running.
      onUpdate = (p) => {
        if (p.update.sessionUpdate === "tool_call_update" && p.update.status === "in_progress") {
          ctx.notify("session/cancel", { sessionId });
        }
      };
    }
    const prompt = [
      { type: "text", text: scenario === "load" ? "and now the rest" : "write the notes" },
      { type: "resource_link", uri: `file://${cwd}/README.md`, name: "README.md" },
    ];
    const done = conforms(
      "session/prompt",
      schema.zPromptResponse,
      await ctx.request("session/prompt", { sessionId, prompt }),
    );
    await settle();
    seen.stopReasons.push(done.stopReason);
    seen.agentText = text("agent_message_chunk");
    seen.thoughtText = text("agent_thought_chunk");
  });
} catch (e) {
  seen.errors.push(String(e && e.stack ? e.stack : e));
}
child.stdin.end();
const code = await new Promise((resolve) => child.on("exit", (c) => resolve(c)));
seen.exitCode = code;
process.stdout.write(JSON.stringify(seen) + "\n");
