// Drives `deputy serve` with types openapi-typescript generated from the live /openapi.json
// (tests/serve.rs generates `api.d.ts` beside this file, compiles both with `tsc --strict`, and
// runs the result with node). A type the document gets wrong fails the compile; a body that
// does not match it fails here.
//
// Usage: node serve_client.js BASE_URL TOKEN

import type { components, paths } from "./api";

type SessionView = components["schemas"]["SessionView"];
type Created = components["schemas"]["Created"];
type SessionList = components["schemas"]["SessionList"];
type Problem = components["schemas"]["Problem"];
type CreateBody =
  paths["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"];
type ListQuery = NonNullable<paths["/v1/sessions"]["get"]["parameters"]["query"]>;

const [base, token] = process.argv.slice(2);
const headers = {
  authorization: `Bearer ${token}`,
  "content-type": "application/json",
};

async function call<T>(method: string, path: string, body?: unknown): Promise<[number, T]> {
  const r = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return [r.status, (text ? JSON.parse(text) : null) as T];
}

function query(q: ListQuery): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (Array.isArray(v)) v.forEach((x) => p.append(k, String(x)));
    else if (v !== undefined) p.append(k, String(v));
  }
  return "?" + p.toString();
}

function check(ok: boolean, what: unknown): void {
  if (!ok) throw new Error(JSON.stringify(what));
}

async function main(): Promise<void> {
  const body: CreateBody = { prompt: "hello", metadata: { team: "web" } };
  const [st, created] = await call<Created>("POST", "/v1/sessions", body);
  check(st === 202, created);
  let view: SessionView;
  for (;;) {
    const [, v] = await call<SessionView>("GET", `/v1/sessions/${created.id}`);
    view = v;
    if (v.phase === "finished") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  check(view.status === "completed" && view.result === "typed answer", view);
  check(view.metadata["team"] === "web", view);
  const [, list] = await call<SessionList>(
    "GET",
    "/v1/sessions" + query({ label: ["team=web"], phase: "finished", limit: 10 }),
  );
  check(list.sessions.length === 1 && list.sessions[0].id === created.id, list);
  const [bad, problem] = await call<Problem>("GET", "/v1/sessions?limit=0");
  check(bad === 400 && problem.detail.includes("limit"), problem);
  const [del] = await call<null>("DELETE", `/v1/sessions/${created.id}`);
  check(del === 204, del);
  console.log("typescript client: ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
