// blobStream over readBlobInto: a consumer that stops early is not held until the
// registry sends more (a stalled body is dropped at once, its connection closed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { blobStream } from "./blobs.ts";
import { RegistryClient } from "./client.ts";
import { parseRegistryReference } from "./reference.ts";
import { BerthError } from "../errors.ts";

test("a blobStream consumer that stops early drops a stalled body and its connection at once", async () => {
  const data = randomBytes(4 * 1024 * 1024);
  const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
  let connectionClosed: Promise<void> | undefined;
  const server = createServer((_req, res) => {
    connectionClosed = new Promise((resolve) => res.on("close", resolve));
    res.writeHead(200, { "content-length": String(data.length) });
    res.write(data.subarray(0, 64 * 1024)); // and nothing more
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const client = new RegistryClient({ certsDir: "/nonexistent", plainHttp: [`127.0.0.1:${port}`], credentials: async () => undefined });
  try {
    const ref = parseRegistryReference(`127.0.0.1:${port}/r:1`);
    let first: Buffer | undefined;
    // Without the drop, leaving this loop would wait for bytes that never come.
    for await (const chunk of blobStream(client, ref, { mediaType: "application/octet-stream", digest, size: data.length })) {
      first = chunk;
      break;
    }
    assert.ok(first && first.length > 0 && data.subarray(0, first.length).equals(first), "the first bytes came through");
    await connectionClosed;
  } finally {
    await client.close();
    server.closeAllConnections();
    server.close();
  }
});

test("a blob larger than its descriptor says fails, naming the sizes", async () => {
  const data = randomBytes(1000);
  const digest = `sha256:${createHash("sha256").update(data).digest("hex")}`;
  const server = createServer((_req, res) => res.writeHead(200, { "content-length": String(data.length) }).end(data));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const client = new RegistryClient({ certsDir: "/nonexistent", plainHttp: [`127.0.0.1:${port}`], credentials: async () => undefined });
  try {
    const ref = parseRegistryReference(`127.0.0.1:${port}/r:1`);
    await assert.rejects(
      (async () => {
        for await (const _ of blobStream(client, ref, { mediaType: "application/octet-stream", digest, size: 10 }));
      })(),
      (err: unknown) => err instanceof BerthError && err.kind === "failed precondition" && /more than the 10 bytes its descriptor names/.test(err.message),
    );
  } finally {
    await client.close();
    server.close();
  }
});
