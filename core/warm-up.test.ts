// The warm-up's loopback registry: a real resolve and blob download run against it, and
// it is gone once the warm-up ends, however it ends.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { pino } from "pino";
import { blobStream } from "./registry/blobs.ts";
import { resolve } from "./registry/resolve.ts";
import { withWarmUpRegistry } from "./registry/warm-up.ts";
import { warmUp } from "./warm-up.ts";

const refused = (port: number) =>
  new Promise<boolean>((done) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), done(false)));
    socket.once("error", () => done(true));
  });

test("a pull's resolve and download run against the loopback registry, which closes after", async () => {
  let port = 0;
  await withWarmUpRegistry(async ({ client, ref, layer }) => {
    port = Number(ref.registry.split(":")[1]);
    assert.equal(ref.registry, `127.0.0.1:${port}`, "only loopback");
    const image = await resolve(client, ref);
    assert.deepEqual(image.manifest.manifest.layers, [layer]);
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of blobStream(client, ref, layer)) {
      hash.update(chunk);
      size += chunk.length;
    }
    assert.equal(`sha256:${hash.digest("hex")}`, layer.digest);
    assert.equal(size, layer.size);
  });
  assert.ok(port > 0);
  assert.ok(await refused(port), "the registry's port is closed");
});

test("a warm-up that fails still closes its registry, and warmUp logs the failure instead of throwing", async () => {
  let port = 0;
  await assert.rejects(
    withWarmUpRegistry(async ({ ref }) => {
      port = Number(ref.registry.split(":")[1]);
      throw new Error("boom");
    }),
    /boom/,
  );
  assert.ok(await refused(port), "the registry's port is closed");
  // The real logger, writing its JSON lines here.
  const lines: { level: number; msg: string; err?: string; ms?: number }[] = [];
  const log = pino({}, new Writable({ write: (chunk: Buffer, _encoding, done) => (lines.push(JSON.parse(chunk.toString())), done()) }));
  await warmUp(log, async () => {
    throw new Error("no loopback");
  });
  await warmUp(log, async () => undefined);
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg]),
    [
      [40, "pull path warm-up failed: the first pull runs it cold"],
      [30, "pull path warmed up"],
    ],
  );
  assert.equal(typeof lines[1]!.ms, "number");
  assert.equal(lines[0]!.err, "no loopback");
});
