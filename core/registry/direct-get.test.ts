// The direct GET against real sockets: every body framing, back-pressure from a slow
// consumer over many reused buffers, a connection lost or a consumer failing midway,
// TLS with a test CA and a client certificate, and heads that are not HTTP.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpServer, type RequestListener } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { directGet, type DirectResponse } from "./direct-get.ts";
import { makePki, type TestPki } from "../../test/fixtures/registry.ts";

const blob = randomBytes(9 * 1024 * 1024 + 12345);
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
let work: string;
let pki: TestPki;
const servers: Server[] = [];
const rawSockets = new Set<Socket>();

before(() => {
  work = mkdtempSync(join(tmpdir(), "berth-direct-get-"));
  pki = makePki(join(work, "pki"));
});

after(async () => {
  for (const s of rawSockets) s.destroy();
  for (const s of servers) {
    (s as { closeAllConnections?: () => void }).closeAllConnections?.();
    await new Promise((resolve) => s.close(resolve));
  }
  rmSync(work, { recursive: true, force: true });
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

const httpServer = async (handler: RequestListener) => `http://127.0.0.1:${await listen(createHttpServer(handler))}`;

/** A server that answers every connection with `reply` (raw bytes), written in pieces. */
async function rawServer(reply: (socket: Socket) => void): Promise<string> {
  const server = createNetServer((socket) => {
    rawSockets.add(socket);
    socket.on("error", () => undefined); // the client may go first
    socket.once("data", () => reply(socket));
  });
  return `http://127.0.0.1:${await listen(server)}`;
}

/** The body through pipeTo, each batch copied (the views are reused after), with the batches' sizes. */
async function drain(res: DirectResponse, slowMs = 0): Promise<{ body: Buffer; batches: number[] }> {
  const parts: Buffer[] = [];
  const batches: number[] = [];
  await res.body.pipeTo(async (chunks) => {
    if (slowMs) await new Promise((resolve) => setTimeout(resolve, slowMs));
    const batch = Buffer.concat(chunks);
    batches.push(batch.length);
    parts.push(batch);
  });
  return { body: Buffer.concat(parts), batches };
}

test("a Content-Length body arrives whole through a slow consumer, a reused buffer's worth at a time", async () => {
  const base = await httpServer((req, res) => {
    assert.equal(req.headers.authorization, "Bearer t");
    res.writeHead(200, { "content-length": String(blob.length), "docker-content-digest": "sha256:x" }).end(blob);
  });
  const res = await directGet(new URL(`${base}/v2/r/blobs/x`), { headers: { authorization: "Bearer t" } });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["docker-content-digest"], "sha256:x");
  const { body, batches } = await drain(res, 5);
  assert.equal(sha(body), sha(blob));
  assert.ok(batches.every((n) => n <= 1024 * 1024), `batches of at most one buffer: ${batches.join(",")}`);
  assert.ok(batches.length >= 10, `the body came in ${batches.length} batches`);
});

test("a chunked body, with chunk extensions and a trailer, is decoded", async () => {
  const pieces = [blob.subarray(0, 1), blob.subarray(1, 70_000), blob.subarray(70_000, 3_000_000)];
  const base = await rawServer((socket) => {
    socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    pieces.forEach((p, i) => socket.write(`${p.length.toString(16)}${i === 1 ? ";name=value" : ""}\r\n`) && socket.write(p) && socket.write("\r\n"));
    socket.end("0\r\nX-Trailer: yes\r\n\r\n");
  });
  const { body } = await drain(await directGet(new URL(`${base}/b`), { headers: {} }));
  assert.equal(sha(body), sha(Buffer.concat(pieces)));
});

test("a body without a length ends with the connection", async () => {
  const base = await rawServer((socket) => {
    socket.write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    socket.end(blob.subarray(0, 2_500_000));
  });
  const { body } = await drain(await directGet(new URL(`${base}/b`), { headers: {} }));
  assert.equal(sha(body), sha(blob.subarray(0, 2_500_000)));
});

test("a connection lost mid-body rejects, after handing over every byte that came", async () => {
  const sent = 1_700_000;
  const base = await rawServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${blob.length}\r\n\r\n`);
    socket.end(blob.subarray(0, sent));
  });
  const parts: Buffer[] = [];
  const res = await directGet(new URL(`${base}/b`), { headers: {} });
  await assert.rejects(
    res.body.pipeTo(async (chunks) => void parts.push(Buffer.concat(chunks))),
    /other side closed with \d+ bytes of the body still to come/,
  );
  assert.equal(sha(Buffer.concat(parts)), sha(blob.subarray(0, sent)));
});

test("a consumer that fails gets nothing more, and the body rejects with its error", async () => {
  const base = await httpServer((_req, res) => res.writeHead(200, { "content-length": String(blob.length) }).end(blob));
  const res = await directGet(new URL(`${base}/b`), { headers: {} });
  let calls = 0;
  await assert.rejects(
    res.body.pipeTo(async () => {
      calls++;
      throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
    }),
    /no space left/,
  );
  assert.equal(calls, 1);
});

test("an error body reads through iteration; a discarded body closes its connection", async () => {
  const document = JSON.stringify({ errors: [{ code: "BLOB_UNKNOWN", message: "blob unknown to registry" }] });
  const base = await httpServer((req, res) => {
    if (req.url === "/missing") res.writeHead(404, { "content-type": "application/json" }).end(document);
    else res.writeHead(200, { "content-length": String(blob.length) }).end(blob);
  });
  const missing = await directGet(new URL(`${base}/missing`), { headers: {} });
  assert.equal(missing.statusCode, 404);
  const parts: Buffer[] = [];
  for await (const chunk of missing.body) parts.push(chunk);
  assert.equal(Buffer.concat(parts).toString(), document);
  const discarded = await directGet(new URL(`${base}/b`), { headers: {} });
  discarded.body.destroy();
  await assert.rejects(discarded.body.pipeTo(async () => undefined), /discarded/);
});

test("an aborted signal stops a download under way", async () => {
  const base = await rawServer((socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${blob.length}\r\n\r\n`);
    socket.write(blob.subarray(0, 100_000)); // and then nothing more
  });
  const controller = new AbortController();
  const res = await directGet(new URL(`${base}/b`), { headers: {}, signal: controller.signal });
  const piping = res.body.pipeTo(async () => undefined);
  controller.abort();
  await assert.rejects(piping, { name: "AbortError" });
});

test("over TLS: the test CA and a client certificate; an unknown CA is refused", async () => {
  const server = createHttpsServer(
    { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert), ca: readFileSync(pki.caCert), requestCert: true, rejectUnauthorized: true },
    (_req, res) => res.writeHead(200, { "content-length": String(blob.length) }).end(blob),
  );
  const url = new URL(`https://127.0.0.1:${await listen(server)}/b`);
  const tls = { ca: [readFileSync(pki.caCert, "utf8")], cert: readFileSync(pki.clientCert, "utf8"), key: readFileSync(pki.clientKey, "utf8") };
  const { body } = await drain(await directGet(url, { headers: {}, tls }));
  assert.equal(sha(body), sha(blob));
  await assert.rejects(directGet(url, { headers: {} }), { code: "SELF_SIGNED_CERT_IN_CHAIN" });
});

test("an answer that is not HTTP, a head too large and a bad length are refused, naming the problem", async () => {
  const notHttp = await rawServer((socket) => socket.end("SSH-2.0-OpenSSH_9.2\r\n\r\n"));
  await assert.rejects(directGet(new URL(`${notHttp}/b`), { headers: {} }), /not an HTTP\/1\.1 status line: "SSH-2\.0/);
  const huge = await rawServer((socket) => socket.end(`HTTP/1.1 200 OK\r\nX-Filler: ${"a".repeat(70_000)}\r\n\r\n`));
  await assert.rejects(directGet(new URL(`${huge}/b`), { headers: {} }), /response head larger than 65536 bytes/);
  const badLength = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n"));
  await assert.rejects(directGet(new URL(`${badLength}/b`), { headers: {} }), /bad Content-Length "12abc"/);
  const badChunk = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  const res = await directGet(new URL(`${badChunk}/b`), { headers: {} });
  await assert.rejects(res.body.pipeTo(async () => undefined), /bad chunk size "zz"/);
  await assert.rejects(directGet(new URL(`${notHttp}/b`), { headers: { "x-evil": "a\r\nHost: elsewhere" } }), /a line break is not allowed/);
});
