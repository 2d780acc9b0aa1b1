// Waiting for a socket to accept connections: it appears later (the directory watch or
// the poll finds it), never appears, its directory does not exist, the waiter gives up.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { socketAccepts, waitForSocket } from "./socket.ts";

const dir = mkdtempSync(join(tmpdir(), "berth-socket-"));
const servers: net.Server[] = [];
after(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  rmSync(dir, { recursive: true, force: true });
});

function listen(path: string): Promise<void> {
  const server = net.createServer((conn) => conn.destroy());
  servers.push(server);
  return new Promise((resolve, reject) => server.once("error", reject).listen(path, () => resolve()));
}

test("a socket that starts listening while the wait runs is found", async () => {
  const path = join(dir, "later.sock");
  const waiting = waitForSocket(path, 30_000);
  // Nothing there when the wait starts.
  assert.equal(await socketAccepts(path), false);
  await listen(path);
  assert.equal(await waiting, true);
});

test("a socket already listening is found at once", async () => {
  const path = join(dir, "now.sock");
  await listen(path);
  assert.equal(await waitForSocket(path, 30_000), true);
});

test("a file there that nothing listens on is not taken for a listening socket", async () => {
  const path = join(dir, "stale.sock");
  writeFileSync(path, "");
  assert.equal(await waitForSocket(path, 200), false);
});

test("a directory that does not exist means polling until the deadline, not an error", async () => {
  assert.equal(await waitForSocket(join(dir, "missing", "x.sock"), 100), false);
});

test("the wait ends as soon as the caller gives up", async () => {
  let asked = 0;
  const result = await waitForSocket(join(dir, "never.sock"), 60_000, () => ++asked > 2);
  assert.equal(result, false);
  assert.equal(asked, 3);
});
