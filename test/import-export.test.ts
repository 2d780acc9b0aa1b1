// Image archives end to end: archives written by the real skopeo imported by the
// real ctr and by berthctl (unpacked into real overlayfs snapshots), berthctl's
// exports read by skopeo and ctr, multi-platform indexes, broken and malicious
// archives refused without leftovers, and mounted layers (whiteouts, opaque dirs,
// hard links) checked on the real filesystem.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { spawn, spawnSync } from "node:child_process";
import { startDaemon, ok, run, distDir, type Daemon, type RunResult } from "./harness.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import {
  blobOf,
  buildImage,
  descriptor,
  imageFromLayers,
  layoutEntries,
  multiPlatformArchive,
  skopeo,
  skopeoArchives,
  tarFiles,
  tarOf,
  type TarEntry,
} from "./fixtures/archives.ts";
import { sha256Digest } from "../core/digest.ts";
import { chainId, chainIds } from "../core/image/chain-id.ts";
import { familiarizeRef, normalizeDockerRef, ociReferenceName, refTranslator } from "../core/image/reference.ts";
import { onlyPlatform, onlyPlatformStrict, parsePlatform } from "../core/image/platform.ts";
import { parseIndex, parseManifest } from "../core/image/manifest.ts";
import { archivePath, symlinkTarget } from "../core/image/archive-reader.ts";
import { isMountPoint } from "../core/mounts.ts";

const refName = "org.opencontainers.image.ref.name";

describe("image library (no daemon)", () => {
  test("chain ids follow image-spec: the first is the diff id, then sha256 of '<chain> <diff>'", () => {
    const a = sha256Digest("a");
    const b = sha256Digest("b");
    const c = sha256Digest("c");
    const ab = sha256Digest(`${a} ${b}`);
    assert.deepEqual(chainIds([a, b, c]), [a, ab, sha256Digest(`${ab} ${c}`)]);
    assert.equal(chainId([a]), a);
    assert.equal(chainId([]), "");
  });

  test("references are normalised like ctr import/export do", () => {
    assert.equal(normalizeDockerRef("busybox:latest"), "docker.io/library/busybox:latest");
    assert.equal(normalizeDockerRef("busybox"), "docker.io/library/busybox:latest");
    assert.equal(normalizeDockerRef("me/app:1"), "docker.io/me/app:1");
    assert.equal(normalizeDockerRef("localhost:5000/app"), "localhost:5000/app:latest");
    assert.equal(normalizeDockerRef(`a@${sha256Digest("x")}`), `docker.io/library/a@${sha256Digest("x")}`);
    assert.throws(() => normalizeDockerRef("Busybox"), /must be lowercase/);
    assert.throws(() => normalizeDockerRef("a".repeat(64).replace(/a/g, "f")), /64-byte hexadecimal/);
    assert.throws(() => normalizeDockerRef("bad ref"), /invalid reference format/);
    assert.equal(familiarizeRef("docker.io/library/busybox:latest"), "busybox:latest");
    assert.equal(familiarizeRef("docker.io/me/app"), "me/app:latest");
    assert.equal(familiarizeRef("ghcr.io/x/y:2"), "ghcr.io/x/y:2");
    assert.equal(ociReferenceName("docker.io/library/busybox:latest"), "latest");
    assert.equal(ociReferenceName("busybox:latest"), "busybox:latest");
    assert.equal(ociReferenceName("localhost:5000/a@sha256:abc"), "@sha256:abc");
    assert.equal(refTranslator("import-x", false)("v1"), "import-x:v1");
    assert.equal(refTranslator("docker.io/a/b", true)("docker.io/other:1"), "");
    assert.equal(refTranslator("docker.io/a/b", true)("docker.io/a/b:1"), "docker.io/a/b:1");
  });

  test("platforms parse and match like containerd's platforms package", () => {
    assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
    assert.deepEqual(parsePlatform("linux/x86_64"), { os: "linux", architecture: "amd64" });
    assert.deepEqual(parsePlatform("linux/aarch64"), { os: "linux", architecture: "arm64" });
    assert.throws(() => parsePlatform("linux/*"), /wildcards/);
    assert.throws(() => parsePlatform("linux/a b"), /invalid component/);
    assert.throws(() => parsePlatform("nonsense"), /unknown operating system or architecture/);
    assert.throws(() => parsePlatform("a/b/c/d"), /cannot parse/);
    const amd64 = onlyPlatform({ os: "linux", architecture: "amd64" });
    assert.ok(amd64.match({ os: "linux", architecture: "386" }), "amd64 hosts run 386");
    assert.ok(!onlyPlatformStrict({ os: "linux", architecture: "amd64" }).match({ os: "linux", architecture: "386" }));
    assert.ok(onlyPlatformStrict(parsePlatform("linux/arm64")).match({ os: "linux", architecture: "aarch64", variant: "8" }));
    assert.ok(amd64.less({ os: "linux", architecture: "amd64" }, { os: "linux", architecture: "386" }));
  });

  test("manifest and index JSON are checked for shape", () => {
    assert.throws(() => parseManifest("{not json", "m"), /m: invalid JSON/);
    assert.throws(() => parseManifest("[]", "m"), /expected a JSON object/);
    assert.throws(() => parseManifest('{"schemaVersion":1,"fsLayers":[]}', "m"), /schema 1/);
    assert.throws(() => parseManifest('{"schemaVersion":2,"manifests":[]}', "m"), /expected manifest but found index/);
    assert.throws(() => parseManifest('{"schemaVersion":2,"config":{"digest":"sha256:00","size":1},"layers":[]}', "m"), /invalid digest/);
    assert.throws(() => parseIndex('{"schemaVersion":2,"config":{},"manifests":[]}', "i"), /expected index but found manifest/);
    assert.throws(() => parseIndex(`{"schemaVersion":2,"manifests":[{"digest":"${sha256Digest("")}","size":-1}]}`, "i"), /invalid size/);
    assert.equal(parseIndex(`{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"${sha256Digest("")}","size":0}]}`, "i").manifests.length, 1);
  });

  test("archive paths: cleaned, absolute and '..' refused, symlinks kept inside", () => {
    assert.equal(archivePath("./blobs//sha256/x/"), "blobs/sha256/x");
    assert.throws(() => archivePath("/etc/passwd"), /absolute paths are not allowed/);
    assert.throws(() => archivePath("a/../../x"), /escapes the archive/);
    assert.equal(symlinkTarget("id/layer.tar", "../abc.tar"), "abc.tar");
    assert.throws(() => symlinkTarget("layer.tar", "../../etc/shadow"), /escapes the archive/);
    assert.throws(() => symlinkTarget("layer.tar", "/etc/shadow"), /absolute path/);
  });
});

let d: Daemon;
let work: string;
let busybox: BuiltImage;
let diffId: string;
let archives: { layout: string; dockerArchive: string; ociArchive: string };
const mounted: string[] = [];

const ctr = (ns: string, ...args: string[]) => d.ctr(args, undefined, ns);
const berthctl = (ns: string, ...args: string[]) => d.berthctl(args, undefined, ns);
const lines = (out: string) => out.split("\n").map((l) => l.trim()).filter((l) => l !== "");
const imageNames = (ns: string) => lines(ok(ctr(ns, "images", "ls", "-q"), "images ls").stdout).sort();
const snapshotKeys = (ns: string) => lines(ok(ctr(ns, "snapshots", "ls"), "snapshots ls").stdout).slice(1).map((l) => l.split(/\s+/)[0]!).sort();
const contentDigests = (ns: string) => lines(ok(ctr(ns, "content", "ls", "-q"), "content ls").stdout).sort();
const leaseIds = (ns: string) => lines(ok(ctr(ns, "leases", "ls", "-q"), "leases ls").stdout);

/** The labels of one blob, from ctr's content ls table (tab separated). */
function contentLabels(ns: string, digest: string): Record<string, string> {
  const row = lines(ok(ctr(ns, "content", "ls"), "content ls").stdout)
    .map((l) => l.split("\t").filter((c) => c !== ""))
    .find((cols) => cols[0] === digest);
  assert.ok(row, `blob ${digest} not in namespace ${ns}`);
  const labels = row.at(-1)!;
  if (labels === "-") return {};
  return Object.fromEntries(labels.split(",").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
}

/** The digest column of `ctr images ls` for one image. */
function imageDigest(ns: string, name: string): string {
  const row = lines(ok(ctr(ns, "images", "ls"), "images ls").stdout)
    .map((l) => l.split(/\s+/))
    .find((cols) => cols[0] === name);
  assert.ok(row, `image ${name} not in namespace ${ns}`);
  return row[2]!;
}

/** A refused import leaves no image, snapshot (extract-* included), blob, ingest or lease behind. */
function assertNothingLeft(ns: string): void {
  assert.deepEqual(imageNames(ns), [], "no image");
  assert.deepEqual(snapshotKeys(ns), [], "no snapshot");
  assert.deepEqual(contentDigests(ns), [], "no blob");
  assert.deepEqual(lines(ok(ctr(ns, "content", "active"), "content active").stdout).slice(1), [], "no ingest");
  assert.deepEqual(leaseIds(ns), [], "no lease");
}

function file(name: string, data: Buffer): string {
  const path = join(work, name);
  writeFileSync(path, data);
  return path;
}

function mountDir(): string {
  const dir = mkdtempSync(join(work, "mnt-"));
  mounted.push(dir);
  return dir;
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-archives-"));
  busybox = await buildBusyboxImage();
  diffId = (JSON.parse(busybox.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0]!;
  archives = skopeoArchives(work, busybox);
  d = await startDaemon();
});

after(async () => {
  for (const dir of mounted) {
    for (let i = 0; i < 8 && existsSync(dir) && isMountPoint(dir); i++) run("umount", [dir]);
  }
  await d?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("the real ctr with skopeo's archives", () => {
  test("ctr images import of a docker-archive: listed, unpacked, config labelled", () => {
    const r = ok(ctr("ctr-docker", "images", "import", archives.dockerArchive), "ctr import");
    assert.match(r.stdout, /^unpacking docker\.io\/library\/busybox:latest \(sha256:[0-9a-f]{64}\)\.\.\.done$/m);
    assert.deepEqual(imageNames("ctr-docker"), ["docker.io/library/busybox:latest"]);
    // One layer: its chain id is its diff id.
    assert.deepEqual(snapshotKeys("ctr-docker"), [diffId]);
    assert.equal(contentLabels("ctr-docker", busybox.config.digest)["containerd.io/gc.ref.snapshot.overlayfs"], diffId);
  });

  test("ctr images import of an oci-archive keeps skopeo's manifest", () => {
    const r = ok(ctr("ctr-oci", "images", "import", archives.ociArchive), "ctr import");
    assert.equal(r.stdout, `unpacking busybox:latest (${busybox.manifest.digest})...done\n`);
    assert.deepEqual(imageNames("ctr-oci"), ["busybox:latest"]);
    assert.deepEqual(snapshotKeys("ctr-oci"), [diffId]);
    assert.equal(contentLabels("ctr-oci", busybox.config.digest)["containerd.io/gc.ref.snapshot.overlayfs"], diffId);
    assert.equal(contentLabels("ctr-oci", busybox.layers[0]!.digest)["containerd.io/uncompressed"], diffId);
  });

  test("ctr images mount shows /bin/busybox; unmount --rm drops view and lease", () => {
    const dir = mountDir();
    const r = ok(ctr("ctr-docker", "images", "mount", "docker.io/library/busybox:latest", dir), "ctr images mount");
    assert.equal(r.stdout, `${diffId}\n${dir}\n`);
    assert.ok(statSync(join(dir, "bin", "busybox")).isFile());
    assert.deepEqual(leaseIds("ctr-docker"), [dir]);
    assert.ok(snapshotKeys("ctr-docker").includes(dir));
    ok(ctr("ctr-docker", "images", "unmount", "--rm", dir), "ctr images unmount");
    assert.equal(isMountPoint(dir), false);
    assert.equal(existsSync(join(dir, "bin")), false);
    assert.deepEqual(leaseIds("ctr-docker"), []);
    assert.deepEqual(snapshotKeys("ctr-docker"), [diffId]);
  });

  test("ctr images export writes an archive skopeo reads", () => {
    const out = join(work, "ctr-export.tar");
    ok(ctr("ctr-docker", "images", "export", out, "docker.io/library/busybox:latest"), "ctr export");
    const inspected = JSON.parse(ok(skopeo(work, ["inspect", `docker-archive:${out}`]), "skopeo inspect").stdout) as { Layers: string[] };
    assert.deepEqual(inspected.Layers, [diffId]);
    // berthctl imports ctr's export with the same digests.
    ok(berthctl("ctr-rt-b", "images", "import", out), "berthctl import of ctr's export");
    assert.equal(imageDigest("ctr-rt-b", "docker.io/library/busybox:latest"), imageDigest("ctr-docker", "docker.io/library/busybox:latest"));
    assert.deepEqual(snapshotKeys("ctr-rt-b"), [diffId]);
  });
});

describe("berthctl images import", () => {
  test("a docker-archive: the same manifest digest as ctr, unpacked, no leftovers", () => {
    const r = ok(berthctl("b-docker", "images", "import", archives.dockerArchive), "berthctl import");
    const target = imageDigest("ctr-docker", "docker.io/library/busybox:latest");
    assert.equal(r.stdout, `unpacking docker.io/library/busybox:latest (${target})...done\n`);
    assert.deepEqual(imageNames("b-docker"), ["docker.io/library/busybox:latest"]);
    assert.equal(imageDigest("b-docker", "docker.io/library/busybox:latest"), target);
    assert.deepEqual(snapshotKeys("b-docker"), [diffId]);
    assert.equal(contentLabels("b-docker", busybox.config.digest)["containerd.io/gc.ref.snapshot.overlayfs"], diffId);
    // The uncompressed layer is named by its diff id; it gets the uncompressed label after apply.
    assert.equal(contentLabels("b-docker", diffId)["containerd.io/uncompressed"], diffId);
    const manifestLabels = contentLabels("b-docker", target);
    assert.equal(manifestLabels["containerd.io/gc.ref.content.config"], busybox.config.digest);
    assert.equal(manifestLabels["containerd.io/gc.ref.content.l.0"], diffId);
    // Only what the image references stays: manifest, config, layer (no index, repositories, <id>/json…).
    assert.deepEqual(contentDigests("b-docker"), [target, busybox.config.digest, diffId].sort());
    assert.deepEqual(leaseIds("b-docker"), []);
  });

  test("an oci-archive, from stdin", () => {
    const r = ok(d.berthctl(["images", "import", "-"], readFileSync(archives.ociArchive), "b-oci"), "berthctl import -");
    assert.equal(r.stdout, `unpacking busybox:latest (${busybox.manifest.digest})...done\n`);
    assert.deepEqual(imageNames("b-oci"), ["busybox:latest"]);
    assert.deepEqual(snapshotKeys("b-oci"), [diffId]);
    assert.deepEqual(contentDigests("b-oci"), busybox.blobs.map((b) => b.digest).sort());
    assert.equal(contentLabels("b-oci", busybox.manifest.digest)["containerd.io/gc.ref.content.l.0"], busybox.layers[0]!.digest);
    assert.equal(contentLabels("b-oci", busybox.layers[0]!.digest)["containerd.io/uncompressed"], diffId);
  });

  test("--no-unpack, then images unpack (twice: the second reuses the snapshot)", () => {
    const r = ok(berthctl("b-unpack", "images", "import", "--no-unpack", archives.ociArchive), "import --no-unpack");
    assert.equal(r.stdout, "");
    assert.deepEqual(imageNames("b-unpack"), ["busybox:latest"]);
    assert.deepEqual(snapshotKeys("b-unpack"), []);
    const first = ok(berthctl("b-unpack", "images", "unpack", "busybox:latest"), "images unpack");
    assert.equal(first.stdout, `unpacking busybox:latest (${busybox.manifest.digest})...done\n`);
    assert.deepEqual(snapshotKeys("b-unpack"), [diffId]);
    assert.equal(contentLabels("b-unpack", busybox.config.digest)["containerd.io/gc.ref.snapshot.overlayfs"], diffId);
    ok(berthctl("b-unpack", "images", "unpack", "busybox:latest"), "images unpack again");
    assert.deepEqual(snapshotKeys("b-unpack"), [diffId]);
    const missing = berthctl("b-unpack", "images", "unpack", "nope:1");
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /image "nope:1": not found/);
  });

  test("--digests and --base-name name images like ctr", () => {
    ok(berthctl("b-names", "images", "import", "--no-unpack", "--digests", "--base-name", "busybox", archives.ociArchive), "import");
    assert.deepEqual(imageNames("b-names"), ["busybox:latest", `busybox@${busybox.manifest.digest}`]);
    ok(ctr("c-names", "images", "import", "--no-unpack", "--digests", "--base-name", "busybox", archives.ociArchive), "ctr import");
    assert.deepEqual(imageNames("c-names"), imageNames("b-names"));
    // A prefix the archive's name does not start with filters it out (only the digest image remains).
    ok(berthctl("b-names2", "images", "import", "--no-unpack", "--digests", "--base-name", "other", archives.ociArchive), "import");
    assert.deepEqual(imageNames("b-names2"), [`other@${busybox.manifest.digest}`]);
    // --index-name keeps the archive's index as an image (its blob is kept and labelled).
    ok(berthctl("b-index", "images", "import", "--index-name", "docker.io/test/index:1", archives.ociArchive), "import --index-name");
    assert.deepEqual(imageNames("b-index"), ["busybox:latest", "docker.io/test/index:1"]);
    const indexDigest = imageDigest("b-index", "docker.io/test/index:1");
    assert.ok(contentDigests("b-index").includes(indexDigest));
    assert.equal(contentLabels("b-index", indexDigest)["containerd.io/gc.ref.content.m.0"], busybox.manifest.digest);
  });

  test("a docker-archive after the OCI one reuses the compressed layer, as ctr does", () => {
    for (const [ns, tool] of [["swap-b", berthctl], ["swap-ctr", ctr]] as const) {
      ok(tool(ns, "images", "import", archives.ociArchive), `${ns} oci import`);
      ok(tool(ns, "images", "import", archives.dockerArchive), `${ns} docker import`);
    }
    const target = imageDigest("swap-ctr", "docker.io/library/busybox:latest");
    assert.notEqual(target, imageDigest("ctr-docker", "docker.io/library/busybox:latest"));
    assert.equal(imageDigest("swap-b", "docker.io/library/busybox:latest"), target);
    assert.equal(contentLabels("swap-b", target)["containerd.io/gc.ref.content.l.0"], busybox.layers[0]!.digest);
  });

  test("concurrent imports of one archive into one namespace all succeed", async () => {
    const runs = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<RunResult>((resolve) => {
            const child = spawn(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", "b-concurrent", "images", "import", archives.dockerArchive]);
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (c) => (stdout += c));
            child.stderr.on("data", (c) => (stderr += c));
            child.on("close", (code) => resolve({ code: code ?? 128, stdout, stderr }));
          }),
      ),
    );
    for (const r of runs) ok(r, "concurrent import");
    const target = imageDigest("ctr-docker", "docker.io/library/busybox:latest");
    assert.deepEqual(imageNames("b-concurrent"), ["docker.io/library/busybox:latest"]);
    assert.deepEqual(snapshotKeys("b-concurrent"), [diffId]);
    assert.deepEqual(contentDigests("b-concurrent"), [target, busybox.config.digest, diffId].sort());
    assert.deepEqual(lines(ok(ctr("b-concurrent", "content", "active"), "content active").stdout).slice(1), []);
  });

  test("a missing input file and a bad --platform are refused before any work", () => {
    const missing = berthctl("b-bad", "images", "import", join(work, "nope.tar"));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /open .*nope\.tar: no such file or directory/);
    const skip = berthctl("b-bad", "images", "import", "--skip-digest-for-named", archives.ociArchive);
    assert.equal(skip.code, 1);
    assert.match(skip.stderr, /--skip-digest-for-named must be specified with --digests option/);
    const noInput = berthctl("b-bad", "images", "import");
    assert.equal(noInput.code, 1);
    assert.match(noInput.stderr, /please provide an input file/);
    const platform = berthctl("b-bad", "images", "import", "--platform", "linux/*", archives.ociArchive);
    assert.equal(platform.code, 1);
    assert.match(platform.stderr, /wildcards not yet supported/);
    assertNothingLeft("b-bad");
  });
});

describe("berthctl images export", () => {
  test("skopeo and the real ctr read it; export → import keeps every digest", async () => {
    const out = join(work, "b-export.tar");
    const r = ok(berthctl("b-docker", "images", "export", out, "docker.io/library/busybox:latest"), "berthctl export");
    assert.equal(r.stdout, "");
    const files = await tarFiles(readFileSync(out));
    const target = imageDigest("b-docker", "docker.io/library/busybox:latest");
    const index = JSON.parse(files.get("index.json")!.toString()) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    assert.equal(index.manifests[0]!.digest, target);
    assert.deepEqual(index.manifests[0]!.annotations, { "io.containerd.image.name": "docker.io/library/busybox:latest", [refName]: "latest" });
    assert.deepEqual(JSON.parse(files.get("oci-layout")!.toString()), { imageLayoutVersion: "1.0.0" });
    assert.deepEqual(JSON.parse(files.get("manifest.json")!.toString()), [
      { Config: `blobs/sha256/${busybox.config.digest.slice(7)}`, RepoTags: ["busybox:latest"], Layers: [`blobs/sha256/${diffId.slice(7)}`] },
    ]);
    for (const [name, data] of files) {
      if (name.startsWith("blobs/sha256/")) assert.equal(sha256Digest(data), `sha256:${name.slice("blobs/sha256/".length)}`);
    }

    const docker = JSON.parse(ok(skopeo(work, ["inspect", `docker-archive:${out}`]), "skopeo inspect docker-archive").stdout) as { Layers: string[]; Architecture: string };
    assert.deepEqual(docker.Layers, [diffId]);
    assert.equal(docker.Architecture, "amd64");
    const oci = JSON.parse(ok(skopeo(work, ["inspect", `oci-archive:${out}`]), "skopeo inspect oci-archive").stdout) as { Layers: string[] };
    assert.deepEqual(oci.Layers, [diffId]);

    const byCtr = ok(ctr("rt-ctr", "images", "import", out), "ctr import of berthctl's export");
    assert.equal(byCtr.stdout, `unpacking docker.io/library/busybox:latest (${target})...done\n`);
    assert.deepEqual(snapshotKeys("rt-ctr"), [diffId]);
    ok(berthctl("rt-b", "images", "import", out), "berthctl import of its own export");
    assert.equal(imageDigest("rt-b", "docker.io/library/busybox:latest"), target);
    // Exports are deterministic: exporting the re-imported image gives the same bytes.
    const again = join(work, "b-export-again.tar");
    ok(berthctl("rt-b", "images", "export", again, "docker.io/library/busybox:latest"), "export again");
    assert.ok(readFileSync(again).equals(readFileSync(out)), "round trip changed the archive");
  });

  test("export to stdout gives the same bytes as to a file", () => {
    const file = join(work, "b-export-stdout-ref.tar");
    ok(berthctl("b-oci", "images", "export", file, "busybox:latest"), "export to file");
    const r = spawnSync(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", "b-oci", "images", "export", "-", "busybox:latest"], { maxBuffer: 64 * 1024 * 1024 });
    assert.equal(r.status, 0, r.stderr.toString());
    assert.ok(r.stdout.equals(readFileSync(file)), "stdout export differs");
  });

  test("several images, --skip-manifest-json, and a missing image leaves no file", async () => {
    const out = join(work, "b-export-oci.tar");
    ok(berthctl("b-oci", "images", "export", "--skip-manifest-json", out, "busybox:latest"), "export --skip-manifest-json");
    const files = await tarFiles(readFileSync(out));
    assert.equal(files.has("manifest.json"), false);
    assert.deepEqual([...files.keys()].filter((n) => n.startsWith("blobs/")).sort(), busybox.blobs.map((b) => `blobs/sha256/${b.digest.slice(7)}`).sort());
    const index = JSON.parse(files.get("index.json")!.toString()) as { manifests: { annotations: Record<string, string> }[] };
    // Not a parseable host name, so ref.name keeps the whole name (containerd's reference.Parse fails on it).
    assert.equal(index.manifests[0]!.annotations[refName], "busybox:latest");

    const missing = join(work, "missing.tar");
    const r = berthctl("b-oci", "images", "export", missing, "busybox:latest", "nope:1");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /image "nope:1": not found/);
    assert.equal(existsSync(missing), false);
    assert.deepEqual(readdirSync(work).filter((n) => n.includes("missing")), []);
    const usage = berthctl("b-oci", "images", "export", missing);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /please provide both an output filename and an image reference to export/);
  });
});

describe("multi-platform indexes", () => {
  let mp: Awaited<ReturnType<typeof multiPlatformArchive>>;
  let archive: string;

  before(async () => {
    mp = await multiPlatformArchive(busybox.layers[0]!, diffId, "latest");
    archive = file("multi.tar", mp.archive);
  });

  test("import labels and keeps the host's manifest by default", () => {
    const r = ok(berthctl("mp-default", "images", "import", "--base-name", "docker.io/test/multi", archive), "import");
    assert.equal(r.stdout, `unpacking docker.io/test/multi:latest (${mp.index.digest})...done\n`);
    assert.deepEqual(imageNames("mp-default"), ["docker.io/test/multi:latest"]);
    const labels = contentLabels("mp-default", mp.index.digest);
    assert.equal(labels["containerd.io/gc.ref.content.m.0"], mp.amd64.manifest.digest);
    assert.equal(labels["containerd.io/gc.ref.content.m.1"], undefined);
    const blobs = contentDigests("mp-default");
    assert.ok(blobs.includes(mp.amd64.manifest.digest) && blobs.includes(mp.amd64.config.digest));
    assert.ok(!blobs.includes(mp.arm64.manifest.digest) && !blobs.includes(mp.arm64.config.digest), "arm64 content was kept");
    assert.deepEqual(snapshotKeys("mp-default"), [diffId]);
    assert.equal(contentLabels("mp-default", mp.amd64.config.digest)["containerd.io/gc.ref.snapshot.overlayfs"], diffId);
    // The real ctr labels the same way.
    ok(ctr("mp-ctr", "images", "import", "--base-name", "docker.io/test/multi", archive), "ctr import");
    assert.deepEqual(contentLabels("mp-ctr", mp.index.digest), labels);
  });

  test("--all-platforms keeps every manifest; --platform picks one", () => {
    ok(berthctl("mp-all", "images", "import", "--all-platforms", "--base-name", "docker.io/test/multi", archive), "import --all-platforms");
    const labels = contentLabels("mp-all", mp.index.digest);
    assert.equal(labels["containerd.io/gc.ref.content.m.0"], mp.amd64.manifest.digest);
    assert.equal(labels["containerd.io/gc.ref.content.m.1"], mp.arm64.manifest.digest);
    for (const blob of [...mp.amd64.blobs, ...mp.arm64.blobs, mp.index]) assert.ok(contentDigests("mp-all").includes(blob.digest), `${blob.digest} missing`);
    assert.equal(contentLabels("mp-all", mp.arm64.manifest.digest)["containerd.io/gc.ref.content.config"], mp.arm64.config.digest);

    ok(berthctl("mp-arm", "images", "import", "--platform", "linux/arm64", "--base-name", "docker.io/test/multi", archive), "import --platform");
    assert.deepEqual(contentLabels("mp-arm", mp.index.digest), { "containerd.io/gc.ref.content.m.0": mp.arm64.manifest.digest });
    assert.equal(contentLabels("mp-arm", mp.arm64.config.digest)["containerd.io/gc.ref.snapshot.overlayfs"], diffId);
    assert.ok(!contentDigests("mp-arm").includes(mp.amd64.manifest.digest));

    const none = berthctl("mp-none", "images", "import", "--platform", "linux/s390x", "--base-name", "docker.io/test/multi", archive);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no match for platform in manifest/);
    assertNothingLeft("mp-none");
  });

  test("export --platform, the host default, and --all-platforms", async () => {
    const arm = join(work, "mp-arm.tar");
    ok(berthctl("mp-all", "images", "export", "--platform", "linux/arm64", arm, "docker.io/test/multi:latest"), "export --platform");
    let files = await tarFiles(readFileSync(arm));
    const has = (blob: { digest: string }) => files.has(`blobs/sha256/${blob.digest.slice(7)}`);
    assert.ok(has(mp.index) && has(mp.arm64.manifest) && has(mp.arm64.config) && has(busybox.layers[0]!));
    assert.ok(!has(mp.amd64.manifest) && !has(mp.amd64.config));
    let docker = JSON.parse(files.get("manifest.json")!.toString()) as { Config: string; RepoTags: string[] }[];
    assert.deepEqual(docker.map((m) => [m.Config, m.RepoTags]), [[`blobs/sha256/${mp.arm64.config.digest.slice(7)}`, ["test/multi:latest"]]]);

    const host = join(work, "mp-host.tar");
    ok(berthctl("mp-all", "images", "export", host, "docker.io/test/multi:latest"), "export");
    files = await tarFiles(readFileSync(host));
    assert.ok(has(mp.amd64.manifest) && !has(mp.arm64.manifest));
    docker = JSON.parse(files.get("manifest.json")!.toString()) as { Config: string; RepoTags: string[] }[];
    assert.equal(docker[0]!.Config, `blobs/sha256/${mp.amd64.config.digest.slice(7)}`);
    assert.deepEqual(JSON.parse(ok(skopeo(work, ["inspect", `docker-archive:${host}`]), "skopeo inspect").stdout).Layers, [diffId]);

    const all = join(work, "mp-all.tar");
    ok(berthctl("mp-all", "images", "export", "--all-platforms", all, "docker.io/test/multi:latest"), "export --all-platforms");
    files = await tarFiles(readFileSync(all));
    assert.ok(has(mp.amd64.manifest) && has(mp.arm64.manifest) && has(mp.arm64.config));
    ok(berthctl("mp-rt", "images", "import", "--all-platforms", all), "re-import");
    assert.deepEqual(imageNames("mp-rt"), ["docker.io/test/multi:latest"]);
    assert.equal(imageDigest("mp-rt", "docker.io/test/multi:latest"), mp.index.digest);

    // Exporting all platforms of an image whose arm64 content was never imported fails cleanly.
    const partial = join(work, "mp-partial.tar");
    const r = berthctl("mp-default", "images", "export", "--all-platforms", partial, "docker.io/test/multi:latest");
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${mp.arm64.manifest.digest}.*not found`));
    assert.equal(existsSync(partial), false);
  });
});

describe("broken and malicious archives are refused, leaving nothing", () => {
  const refused = (ns: string, archiveBytes: Buffer, pattern: RegExp, ...flags: string[]) => {
    const path = file(`${ns}.tar`, archiveBytes);
    const r = berthctl(ns, "images", "import", ...flags, path);
    assert.equal(r.code, 1, `import of ${ns} succeeded:\n${r.stdout}`);
    assert.match(r.stderr, pattern);
    assertNothingLeft(ns);
  };
  const named = (blob: { mediaType: string; digest: string; size: number }, name = "docker.io/test/bad:1") => descriptor(blob as never, { annotations: { [refName]: name } });

  test("a blob whose content does not hash to its name", async () => {
    const entries = layoutEntries(busybox.blobs, [named(busybox.manifest)]).map((e) =>
      e.name === `blobs/sha256/${busybox.layers[0]!.digest.slice(7)}` ? { ...e, data: Buffer.concat([busybox.layers[0]!.data, Buffer.from("x")]) } : e,
    );
    refused("bad-digest", await tarOf(entries), /blob "blobs\/sha256\/[0-9a-f]{64}": digest mismatch: its content hashes to sha256:/);
    // Also when the shared store already holds the real blob (from another namespace) and no byte needs sending.
    refused("bad-digest2", await tarOf(entries), /digest mismatch/);
  });

  test("a truncated tar", () => {
    const whole = readFileSync(archives.ociArchive);
    refused("truncated", whole.subarray(0, Math.floor(whole.length * 0.6)), /archive is truncated: unexpected end of data/);
  });

  test("a layer that is not valid gzip: apply fails, no partial snapshot", async () => {
    const corrupt = blobOf("application/vnd.oci.image.layer.v1.tar+gzip", Buffer.concat([gzipSync(Buffer.alloc(0)).subarray(0, 10), Buffer.from("this is not deflate data at all")]));
    const image = imageFromLayers([corrupt], [sha256Digest("whatever")]);
    refused("bad-gzip", await tarOf(layoutEntries(image.blobs, [named(image.manifest)])), /failed to extract layer/);
    // Second layer corrupt: the first layer, committed by this import, is removed again.
    const good = busybox.layers[0]!;
    const two = imageFromLayers([good, corrupt], [diffId, sha256Digest("whatever")]);
    refused("bad-gzip2", await tarOf(layoutEntries(two.blobs, [named(two.manifest)])), /failed to extract layer/);
  });

  test("a layer whose content is not the config's diff id", async () => {
    const image = imageFromLayers([busybox.layers[0]!], [sha256Digest("another diff id")]);
    refused("bad-diffid", await tarOf(layoutEntries(image.blobs, [named(image.manifest)])), /wrong diff id calculated on extraction/);
  });

  test("entries with '..' or absolute paths, and symlinks leaving the archive", async () => {
    const base = layoutEntries(busybox.blobs, [named(busybox.manifest)]);
    refused("dotdot", await tarOf([{ name: "../evil", data: "x" }, ...base]), /archive entry "\.\.\/evil": path escapes the archive/);
    refused("dotdot2", await tarOf([...base, { name: "blobs/../../evil", data: "x" }]), /path escapes the archive/);
    refused("absolute", await tarOf([{ name: "/etc/evil", data: "x" }, ...base]), /absolute paths are not allowed/);
    refused("symlink", await tarOf([{ name: "layer.tar", type: "symlink", linkname: "../../etc/shadow" }, ...base]), /symlink "\.\.\/\.\.\/etc\/shadow" escapes the archive/);
  });

  test("a Docker manifest.json naming a missing layer or config", async () => {
    const config = { name: "cfg.json", data: busybox.config.data };
    const layer = { name: "layer.tar", data: readFileSync(archives.dockerArchive).subarray(0, 0) };
    const manifest = (cfg: string, layers: string[]) => ({ name: "manifest.json", data: JSON.stringify([{ Config: cfg, RepoTags: ["bad:1"], Layers: layers }]) });
    refused("no-layer", await tarOf([config, manifest("cfg.json", ["missing/layer.tar"])]), /manifest\.json\[0\]: layer "missing\/layer\.tar" is not in the archive/);
    refused("no-config", await tarOf([layer, manifest("nope.json", ["layer.tar"])]), /image config "nope\.json" is not in the archive/);
    refused("bad-manifest-json", await tarOf([config, { name: "manifest.json", data: "{nope" }]), /manifest\.json: invalid JSON/);
    refused("bad-manifest-shape", await tarOf([config, { name: "manifest.json", data: '[{"Config":"cfg.json"}]' }]), /"Layers" must be an array/);
    refused("bad-repotag", await tarOf([config, { name: "manifest.json", data: '[{"Config":"cfg.json","RepoTags":["Bad:1"],"Layers":[]}]' }]), /normalize image ref "Bad:1"/);
  });

  test("an OCI layout whose manifest names a blob the archive lacks", async () => {
    const entries = layoutEntries(busybox.blobs, [named(busybox.manifest)]).filter((e) => e.name !== `blobs/sha256/${busybox.layers[0]!.digest.slice(7)}`);
    refused("oci-missing", await tarOf(entries), new RegExp(`blob ${busybox.layers[0]!.digest} .* is neither in the archive nor in the content store`));
    const noManifest = layoutEntries([busybox.config, busybox.layers[0]!], [named(busybox.manifest)]);
    refused("oci-missing-manifest", await tarOf(noManifest), new RegExp(`blob ${busybox.manifest.digest} .* is neither in the archive`));
  });

  test("not an image archive, or a broken layout", async () => {
    const index = (data: string): TarEntry[] => [{ name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' }, { name: "index.json", data }];
    refused("not-tar", Buffer.from("definitely not a tar archive, just some text that is long enough to fill a header block".repeat(8)), /not a valid tar archive/);
    refused("not-gzip", Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0]), Buffer.from("garbage".repeat(100))]), /not a valid gzip stream/);
    refused("empty-tar", await tarOf([{ name: "hello.txt", data: "hi" }]), /unrecognized image format/);
    refused("no-index", await tarOf([{ name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' }]), /missing index\.json in OCI layout/);
    refused("bad-version", await tarOf([{ name: "oci-layout", data: '{"imageLayoutVersion":"9.9.9"}' }, { name: "index.json", data: "{}" }]), /unsupported OCI version 9\.9\.9/);
    refused("bad-layout-json", await tarOf([{ name: "oci-layout", data: "{" }]), /untar oci layout/);
    refused("bad-index-json", await tarOf(index("{oops")), /index\.json: invalid JSON/);
    refused("index-is-manifest", await tarOf(index(busybox.manifest.data.toString())), /expected index but found manifest/);
    refused("sha512", await tarOf([...index('{"schemaVersion":2,"manifests":[]}'), { name: `blobs/sha512/${"a".repeat(128)}`, data: "x" }]), /unsupported digest algorithm "sha512"/);
    refused("bad-hex", await tarOf([...index('{"schemaVersion":2,"manifests":[]}'), { name: "blobs/sha256/xyz", data: "x" }]), /"xyz" is not a sha256 digest/);
    // A valid archive still fails as a whole when one image of it is bad: the good one is not kept either.
    const bad = imageFromLayers([busybox.layers[0]!], [sha256Digest("nope")]);
    const mixed = layoutEntries([...busybox.blobs, ...bad.blobs], [named(busybox.manifest, "docker.io/test/good:1"), named(bad.manifest)]);
    refused("mixed", await tarOf(mixed), /wrong diff id/);
  });

  test("a gzip-compressed archive is accepted (docker load does too)", () => {
    const gz = file("oci.tar.gz", gzipSync(readFileSync(archives.ociArchive)));
    ok(berthctl("gz", "images", "import", gz), "import of a .tar.gz");
    assert.deepEqual(imageNames("gz"), ["busybox:latest"]);
    assert.deepEqual(snapshotKeys("gz"), [diffId]);
  });
});

describe("mounted layers", () => {
  test("whiteouts delete, opaque dirs hide the lower layer, hard links stay linked", async () => {
    const image = await buildImage([
      {
        entries: [
          { name: "a/", type: "directory" },
          { name: "a/gone.txt", data: "gone" },
          { name: "a/keep.txt", data: "keep" },
          { name: "opq/", type: "directory" },
          { name: "opq/lower.txt", data: "lower" },
          { name: "opq/sub/", type: "directory" },
          { name: "opq/sub/deep.txt", data: "deep" },
          { name: "hl/", type: "directory" },
          { name: "hl/orig", data: "linked" },
          { name: "hl/link", type: "link", linkname: "hl/orig" },
        ],
      },
      {
        gzip: false,
        entries: [
          { name: "a/", type: "directory" },
          { name: "a/.wh.gone.txt" },
          { name: "opq/", type: "directory" },
          { name: "opq/.wh..wh..opq" },
          { name: "opq/upper.txt", data: "upper" },
          { name: "up/", type: "directory" },
          { name: "up/one", data: "two names" },
          { name: "up/two", type: "link", linkname: "up/one" },
        ],
      },
    ]);
    const archive = file("layers.tar", await tarOf(layoutEntries(image.blobs, [descriptor(image.manifest, { annotations: { [refName]: "docker.io/test/layers:1" } })])));
    ok(berthctl("layers", "images", "import", archive), "import");
    const diffIds = (JSON.parse(image.config.data.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
    assert.deepEqual(snapshotKeys("layers"), chainIds(diffIds).sort());

    const check = (dir: string) => {
      assert.equal(existsSync(join(dir, "a", "gone.txt")), false, "whiteout did not delete a/gone.txt");
      assert.equal(existsSync(join(dir, "a", ".wh.gone.txt")), false, "whiteout file is visible");
      assert.equal(readFileSync(join(dir, "a", "keep.txt"), "utf8"), "keep");
      assert.deepEqual(readdirSync(join(dir, "opq")).sort(), ["upper.txt"], "opaque dir shows lower content");
      for (const [a, b] of [["hl/orig", "hl/link"], ["up/one", "up/two"]] as const) {
        const sa = statSync(join(dir, a));
        const sb = statSync(join(dir, b));
        assert.equal(sa.ino, sb.ino, `${a} and ${b} are not the same inode`);
        assert.equal(sa.nlink, 2);
      }
    };

    const dir = mountDir();
    const r = ok(berthctl("layers", "images", "mount", "docker.io/test/layers:1", dir), "berthctl images mount");
    assert.equal(r.stdout, `${chainId(diffIds)}\n${dir}\n`);
    assert.ok(isMountPoint(dir));
    check(dir);
    assert.throws(() => writeFileSync(join(dir, "new.txt"), "x"), /EROFS/, "a View must be read-only");
    assert.deepEqual(leaseIds("layers"), [dir]);
    ok(berthctl("layers", "images", "unmount", "--rm", dir), "berthctl images unmount --rm");
    assert.equal(isMountPoint(dir), false);
    assert.deepEqual(leaseIds("layers"), []);
    assert.ok(!snapshotKeys("layers").includes(dir));

    // The real ctr mounts the same snapshots the same way.
    const dir2 = mountDir();
    ok(ctr("layers", "images", "mount", "docker.io/test/layers:1", dir2), "ctr images mount");
    check(dir2);
    ok(ctr("layers", "images", "unmount", "--rm", dir2), "ctr images unmount");
    assert.equal(isMountPoint(dir2), false);
  });

  test("a one-layer image mounts as a read-only bind; --rw gives a writable snapshot", () => {
    const dir = mountDir();
    ok(berthctl("b-docker", "images", "mount", "docker.io/library/busybox:latest", dir), "mount");
    assert.ok(statSync(join(dir, "bin", "busybox")).isFile());
    assert.throws(() => writeFileSync(join(dir, "new.txt"), "x"), /EROFS/);
    ok(berthctl("b-docker", "images", "unmount", "--rm", dir), "unmount");
    assert.equal(isMountPoint(dir), false);

    const rw = mountDir();
    ok(berthctl("b-docker", "images", "mount", "--rw", "docker.io/library/busybox:latest", rw), "mount --rw");
    writeFileSync(join(rw, "new.txt"), "x");
    ok(berthctl("b-docker", "images", "unmount", "--rm", rw), "unmount");
    assert.equal(existsSync(join(rw, "new.txt")), false);
    assert.deepEqual(snapshotKeys("b-docker"), [diffId], "the writable snapshot was removed");
    // The layer itself was not touched by the write.
    const check = mountDir();
    ok(berthctl("b-docker", "images", "mount", "docker.io/library/busybox:latest", check), "mount again");
    assert.equal(existsSync(join(check, "new.txt")), false);
    ok(berthctl("b-docker", "images", "unmount", "--rm", check), "unmount");
  });

  test("mount errors: unknown image, missing arguments", () => {
    const dir = mountDir();
    const r = berthctl("layers", "images", "mount", "nope:1", dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /image "nope:1": not found/);
    assert.equal(isMountPoint(dir), false);
    assert.deepEqual(leaseIds("layers"), [], "the lease of a failed mount is dropped");
    assert.match(berthctl("layers", "images", "mount", "nope:1").stderr, /please provide a target path to mount to/);
    assert.match(berthctl("layers", "images", "unmount").stderr, /please provide a target path to unmount from/);
  });
});
