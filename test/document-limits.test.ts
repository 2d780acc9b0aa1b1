// An image's JSON documents are read whole into memory, so each has a size limit:
// manifests and indexes 4 MiB (what registries accept), configs 8 MiB. Checked through
// `berthctl images import` against a real berthd; a refused import leaves nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import { blobOf, descriptor, layoutEntries, ociManifestType, tarOf, type Blob, type TarEntry } from "./fixtures/archives.ts";

const refName = "org.opencontainers.image.ref.name";
const MiB = 1024 * 1024;

let d: Daemon;
let work: string;
let busybox: BuiltImage;

before(async () => {
  d = await startDaemon();
  work = mkdtempSync(join(tmpdir(), "berth-document-limits-"));
  busybox = await buildBusyboxImage();
});

after(async () => {
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

const lines = (out: string) => out.split("\n").map((l) => l.trim()).filter((l) => l !== "");

/** busybox's manifest with an annotation padding it to about `bytes`. */
function paddedManifest(bytes: number, config: Blob = busybox.config): Blob {
  const json = JSON.parse(busybox.manifest.data.toString()) as Record<string, unknown>;
  json.config = { mediaType: config.mediaType, digest: config.digest, size: config.size };
  json.annotations = { "test.padding": "p".repeat(bytes) };
  return blobOf(ociManifestType, JSON.stringify(json));
}

async function importArchive(ns: string, entries: TarEntry[]) {
  const path = join(work, `${ns}.tar`);
  writeFileSync(path, await tarOf(entries));
  return d.berthctl(["images", "import", path], undefined, ns);
}

function refused(r: ReturnType<Daemon["berthctl"]>, ns: string, pattern: RegExp): void {
  assert.equal(r.code, 1, `import in ${ns} succeeded:\n${r.stdout}`);
  assert.match(r.stderr, pattern);
  assert.deepEqual(lines(ok(d.ctr(["images", "ls", "-q"], undefined, ns)).stdout), [], "no image left");
  assert.deepEqual(lines(ok(d.ctr(["leases", "ls", "-q"], undefined, ns)).stdout), [], "no lease left");
}

test("a manifest just under 4 MiB is imported", async () => {
  const manifest = paddedManifest(4 * MiB - 2048);
  assert.ok(manifest.size <= 4 * MiB);
  const r = await importArchive("under", layoutEntries([manifest, busybox.config, ...busybox.layers], [descriptor(manifest, { annotations: { [refName]: "docker.io/test/big:1" } })]));
  ok(r, "import");
  assert.deepEqual(lines(ok(d.ctr(["images", "ls", "-q"], undefined, "under")).stdout), ["docker.io/test/big:1"]);
});

test("a manifest over 4 MiB is refused, naming it and the limit", async () => {
  const manifest = paddedManifest(4 * MiB + 1);
  const r = await importArchive("manifest", layoutEntries([manifest, busybox.config, ...busybox.layers], [descriptor(manifest, { annotations: { [refName]: "docker.io/test/big:1" } })]));
  refused(r, "manifest", new RegExp(`manifest ${manifest.digest} is ${manifest.size} bytes: an image manifest may have at most 4194304 bytes`));
});

test("a config over 8 MiB is refused", async () => {
  const json = JSON.parse(busybox.config.data.toString()) as Record<string, unknown>;
  json.history = [{ created_by: "c".repeat(8 * MiB) }];
  const config = blobOf(busybox.config.mediaType, JSON.stringify(json));
  const manifest = paddedManifest(10, config);
  const r = await importArchive("config", layoutEntries([manifest, config, ...busybox.layers], [descriptor(manifest, { annotations: { [refName]: "docker.io/test/big:1" } })]));
  refused(r, "config", new RegExp(`config ${config.digest} is ${config.size} bytes: an image config may have at most 8388608 bytes`));
});

test("an archive's index.json over 4 MiB is refused before it is read", async () => {
  const manifests = [descriptor(busybox.manifest, { annotations: { [refName]: "docker.io/test/big:1", "test.padding": "i".repeat(4 * MiB) } })];
  const r = await importArchive("index", layoutEntries(busybox.blobs, manifests));
  refused(r, "index", /archive entry "index\.json" is \d+ bytes, more than the 4194304 allowed/);
});

test("a Docker archive's manifest.json over 4 MiB is refused", async () => {
  const manifestJson = JSON.stringify([{ Config: "config.json", RepoTags: ["test/big:1"], Layers: ["layer.tar"], Padding: "m".repeat(4 * MiB) }]);
  const r = await importArchive("docker", [
    { name: "config.json", data: busybox.config.data },
    { name: "manifest.json", data: manifestJson },
  ]);
  refused(r, "docker", /archive entry "manifest\.json" is \d+ bytes, more than the 4194304 allowed/);
});
