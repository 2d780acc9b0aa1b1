// The HTTP/1.1 client against a real node:http server on a UNIX socket: bodies by
// Content-Length, chunked and close-delimited, streamed uploads, the 101 takeover with
// bytes sent right after it, and a connection that ends mid-body.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { send } from "./http1.ts";
import { readAll } from "./client.ts";
import { Demuxer } from "./streams.ts";

let dir: string;
let server: Server;
let socketPath: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "berth-http1-"));
  socketPath = join(dir, "s.sock");
  server = createServer(async (req, res) => {
    const body = await readAll(req);
    if (req.url === "/length") res.writeHead(200, { "Content-Length": "5" }).end("hello");
    else if (req.url === "/chunked") {
      res.writeHead(200, { "Content-Type": "application/json" });
      for (let i = 0; i < 3; i++) res.write(`{"n":${i}}\r\n`);
      res.end();
    } else if (req.url === "/echo") res.writeHead(200, { "Content-Length": String(body.length) }).end(body);
    else if (req.url === "/cut") {
      res.writeHead(200, { "Content-Length": "100" });
      // Cut once the headers and the first bytes are out.
      res.write("partial", () => res.socket?.destroy());
    } else res.writeHead(404, { "Content-Type": "application/json" }).end('{"message":"nope"}');
  });
  server.on("upgrade", (_req, socket: Socket, head: Buffer) => {
    socket.write("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly");
    socket.on("data", (d) => socket.write(d));
    socket.on("end", () => socket.end("bye"));
    if (head.length) socket.write(head);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
});

after(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const get = (path: string, extra: Partial<Parameters<typeof send>[1]> = {}) => send({ socketPath }, { method: "GET", path, headers: { Host: "x" }, ...extra });

test("bodies by Content-Length and chunked encoding", async () => {
  const r = await get("/length");
  assert.equal(r.status, 200);
  assert.equal((await readAll(r.body)).toString(), "hello");
  const c = await get("/chunked");
  assert.equal(c.headers["content-type"], "application/json");
  assert.equal((await readAll(c.body)).toString(), '{"n":0}\r\n{"n":1}\r\n{"n":2}\r\n');
  const e = await get("/missing");
  assert.equal(e.status, 404);
  assert.equal((await readAll(e.body)).toString(), '{"message":"nope"}');
});

test("a streamed upload goes out chunked and arrives whole", async () => {
  const parts = Array.from({ length: 200 }, (_, i) => Buffer.alloc(10_000, i % 256));
  const r = await send({ socketPath }, { method: "POST", path: "/echo", headers: { Host: "x" }, body: Readable.from(parts) });
  const echoed = await readAll(r.body);
  assert.ok(echoed.equals(Buffer.concat(parts)));
});

test("a body cut short is an error, not a short success", async () => {
  const r = await get("/cut");
  await assert.rejects(readAll(r.body), /closed the connection before the response was complete/);
});

test("101 hands over the socket with the bytes that came with it", async () => {
  const r = await send({ socketPath }, { method: "POST", path: "/attach", headers: { Host: "x" }, body: Buffer.alloc(0), upgrade: true });
  assert.equal(r.status, 101);
  assert.equal(r.head.toString(), "early");
  const got: Buffer[] = [];
  r.socket.on("data", (d: Buffer) => got.push(d));
  r.socket.resume();
  r.socket.end("ping");
  await new Promise((resolve) => r.socket.once("end", resolve));
  assert.equal(Buffer.concat(got).toString(), "pingbye");
});

test("the demuxer splits framed output whatever the chunk boundaries", () => {
  const frame = (stream: number, text: string) => {
    const payload = Buffer.from(text);
    const header = Buffer.alloc(8);
    header[0] = stream;
    header.writeUInt32BE(payload.length, 4);
    return Buffer.concat([header, payload]);
  };
  const all = Buffer.concat([frame(1, "out1\n"), frame(2, "err\n"), frame(1, "out2\n")]);
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const sink = (into: Buffer[]) => ({ write: (b: Buffer) => into.push(Buffer.from(b)) }) as unknown as NodeJS.WritableStream;
  const demux = new Demuxer(sink(stdout), sink(stderr));
  for (let i = 0; i < all.length; i += 3) demux.push(all.subarray(i, i + 3));
  assert.equal(Buffer.concat(stdout).toString(), "out1\nout2\n");
  assert.equal(Buffer.concat(stderr).toString(), "err\n");
});
