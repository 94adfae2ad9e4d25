// A client generated from the /openapi.json of keel's test bed (keel's routes and operation
// layer, with the tests' kinds: tests/common/testbed.rs), used as a user would: openapi-typescript makes
// the types (generated/keel.d.ts, by scripts/clients.sh from the live server), openapi-fetch
// makes the calls. tsc checks the types before this runs, including three submissions below
// that must not compile (each marked as an expected error): the document says what each kind
// takes.
//
// Usage: node dist/client.js http://127.0.0.1:PORT
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/keel.js";

type Operation = components["schemas"]["Operation"];
type Submission = components["schemas"]["SubmitRequest"];

// @ts-expect-error `sleep` takes `ms`, not `seconds`.
const misspelled: Submission = { kind: "sleep", input: { seconds: 3 } };
// @ts-expect-error no kind is called `teleport`.
const unknownKind: Submission = { kind: "teleport" };
// @ts-expect-error `flaky` needs `failures`.
const incomplete: Submission = { kind: "flaky", input: { ms: 3 } };
void [misspelled, unknownKind, incomplete];

const baseUrl = process.argv[2];
if (!baseUrl) throw new Error("usage: client.js BASE_URL");
const client = createClient<paths>({ baseUrl });

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function submit(body: Submission): Promise<Operation> {
  const { data, response } = await client.POST("/v1/operations", { body });
  check(response.status === 202 && data !== undefined, `submit answered ${response.status}`);
  const location = response.headers.get("operation-location") ?? "";
  check(location === `${baseUrl}/v1/operations/${data.id}`, `Operation-Location ${location}`);
  return data;
}

async function submitAndWait(): Promise<string> {
  const submitted = await submit({ kind: "sleep", input: { ms: 200 } });
  const { data } = await client.GET("/v1/operations/{id}/wait", {
    params: { path: { id: submitted.id }, query: { timeout_ms: 2000 } },
  });
  check(data?.status === "succeeded", `waited: ${JSON.stringify(data)}`);
  const result = data.result as components["schemas"]["Slept"];
  check(result.slept_ms === 200, `result ${JSON.stringify(result)}`);
  return submitted.id;
}

async function stream(): Promise<void> {
  const submitted = await submit({ kind: "sleep", input: { ms: 300, steps: 3 } });
  const { response } = await client.GET("/v1/operations/{id}/events", {
    params: { path: { id: submitted.id } },
    parseAs: "stream",
  });
  check(response.ok && response.body !== null, `events answered ${response.status}`);
  const decoder = new TextDecoder();
  const seen: Operation[] = [];
  let buffered = "";
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    const events = buffered.split("\n\n");
    buffered = events.pop() ?? "";
    for (const event of events) {
      const data = event.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim());
      if (data.length > 0) seen.push(JSON.parse(data.join("\n")) as Operation);
    }
    if (seen.at(-1)?.done) break;
  }
  const last = seen.at(-1);
  check(last?.status === "succeeded", `the stream ended with ${JSON.stringify(last)}`);
  check(seen.some((operation) => operation.progress.percent < 100), "the stream showed progress before the end");
}

async function cancel(): Promise<void> {
  const submitted = await submit({ kind: "sleep", input: { ms: 60_000 } });
  const { data, response } = await client.POST("/v1/operations/{id}/cancel", {
    params: { path: { id: submitted.id } },
  });
  check(response.status === 200 && data?.status === "canceled", `cancel: ${JSON.stringify(data)}`);
  const again = await client.POST("/v1/operations/{id}/cancel", { params: { path: { id: submitted.id } } });
  check(again.response.status === 409 && again.error?.type === "operation-finished", "a second cancel is a 409");
}

async function remove(id: string): Promise<void> {
  const { response } = await client.DELETE("/v1/operations/{id}", { params: { path: { id } } });
  check(response.status === 204, `delete answered ${response.status}`);
  const { error, response: gone } = await client.GET("/v1/operations/{id}", { params: { path: { id } } });
  check(gone.status === 404 && error?.type === "not-found", "a deleted operation is gone");
}

const finished = await submitAndWait();
await stream();
await cancel();
await remove(finished);
console.log("TypeScript client (openapi-typescript + openapi-fetch): submit, wait, stream, cancel and delete all work");
