// A large context file's digest is taken while the context is extracted and used for the
// COPY's cache key only while the file is the one extraction wrote; anything that could
// make a path's bytes differ from what was hashed (links, a path given twice) drops it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeHeader, endOfArchive, padding } from "../../../core/tar/writer.ts";
import { extractContext, removeContext } from "./context.ts";
import { digestsOf } from "./context-digests.ts";
import { hashSources, selectSources } from "./sources.ts";

type Entry = { name: string; data?: Buffer; link?: string };

function tarOf(entries: Entry[]): Buffer[] {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.link !== undefined) parts.push(encodeHeader({ name: e.name, type: "symlink", linkname: e.link, mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0 }));
    else parts.push(encodeHeader({ name: e.name, type: "file", mode: 0o644, uid: 0, gid: 0, size: e.data!.length, mtime: 0 }), e.data!, padding(e.data!.length));
  }
  return [...parts, endOfArchive];
}

const big = (fill: number) => Buffer.alloc((1 << 20) + 4096, fill);
const sha = (b: Buffer) => createHash("sha256").update(b).digest();

async function withContext<T>(entries: Entry[], fn: (dir: string) => Promise<T>): Promise<T> {
  const base = mkdtempSync(join(tmpdir(), "berth-context-digests-"));
  const dir = await extractContext(tarOf([{ name: "Dockerfile", data: Buffer.from("FROM scratch\n") }, ...entries]), "Dockerfile", join(base, "context"));
  try {
    return await fn(dir);
  } finally {
    removeContext(join(base, "context"));
    rmSync(base, { recursive: true, force: true });
  }
}

test("a large file's digest is taken at extraction, gives the same key as reading it, and is forgotten with the context", async () => {
  let saved: string | undefined;
  const key = await withContext([{ name: "big.bin", data: big(1) }, { name: "./small.txt", data: Buffer.from("s\n") }], async (dir) => {
    saved = dir;
    const recorded = digestsOf(dir);
    assert.ok(recorded, "the context has a record");
    const selected = selectSources(dir, "big.bin", "context");
    assert.deepEqual(recorded.digestOf(selected[0]!.host, selected[0]!.stat), sha(big(1)));
    assert.equal(recorded.digestOf(join(dir, "small.txt"), selectSources(dir, "small.txt", "context")[0]!.stat), undefined, "small files are not recorded");
    const withRecord = await hashSources(selected, recorded);
    assert.equal(withRecord, await hashSources(selected), "the key is the same whether the digest was recorded or read");
    return withRecord;
  });
  assert.equal(digestsOf(saved!), undefined, "removing the context forgets its record");
  const changed = await withContext([{ name: "big.bin", data: big(2) }], async (dir) => hashSources(selectSources(dir, "big.bin", "context"), digestsOf(dir)));
  assert.notEqual(changed, key, "other bytes of the same size: another key");
});

test("a file changed after extraction is hashed from disk, not by its recorded digest", async () => {
  await withContext([{ name: "big.bin", data: big(3) }], async (dir) => {
    writeFileSync(join(dir, "big.bin"), big(4));
    const selected = selectSources(dir, "big.bin", "context");
    assert.equal(digestsOf(dir)!.digestOf(selected[0]!.host, selected[0]!.stat), undefined);
    const fresh = await withContext([{ name: "big.bin", data: big(4) }], async (other) => hashSources(selectSources(other, "big.bin", "context")));
    assert.equal(await hashSources(selected, digestsOf(dir)), fresh);
  });
});

test("bad input: a context with a symlink or a path given twice keeps no digests (their bytes on disk may differ from those hashed)", async () => {
  await withContext([{ name: "big.bin", data: big(5) }, { name: "link", link: "big.bin" }], async (dir) => {
    const selected = selectSources(dir, "big.bin", "context");
    assert.equal(digestsOf(dir)!.digestOf(selected[0]!.host, selected[0]!.stat), undefined);
  });
  await withContext([{ name: "big.bin", data: big(6) }, { name: "./big.bin", data: big(7) }], async (dir) => {
    const selected = selectSources(dir, "big.bin", "context");
    assert.equal(digestsOf(dir)!.digestOf(selected[0]!.host, selected[0]!.stat), undefined);
    const fresh = await withContext([{ name: "big.bin", data: big(7) }], async (other) => hashSources(selectSources(other, "big.bin", "context")));
    assert.equal(await hashSources(selected, digestsOf(dir)), fresh, "the file on disk (the last entry) decides the key");
  });
});
