// berthctl against the real ctr on one daemon: whatever one tool does, the other
// sees; where both print the same thing, the bytes are the same.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startDaemon, distDir, ok, run, type Daemon } from "./harness.ts";
import { closeChannels, grpcClient, inNamespace } from "../core/grpc-client.ts";
import { sha256Digest } from "../core/digest.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { ContentDefinition, WriteAction, type WriteContentRequest } from "../core/gen/containerd/services/content/v1/content.ts";
import type { DeepPartial } from "../core/gen/containerd/services/content/v1/content.ts";
import { ociIndexType, ociManifestType, tinyImage, twoPlatformIndex, type Blob } from "./fixtures/archives.ts";

let d: Daemon;

const ctr = (args: string[], input?: string | Buffer, ns?: string) => d.ctr(args, input, ns);
const berthctl = (args: string[], input?: string | Buffer, ns?: string) => d.berthctl(args, input, ns);

/** Binary-safe variants (content get). */
function ctrRaw(args: string[]): Buffer {
  return runRaw("ctr", ["--address", d.address, "--namespace", "default", ...args]);
}
function berthctlRaw(args: string[]): Buffer {
  return runRaw(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", "default", ...args]);
}
function runRaw(cmd: string, args: string[]): Buffer {
  const { spawnSync } = process.getBuiltinModule("node:child_process");
  const r = spawnSync(cmd, args, { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
}

/** Diagnostics of either tool, comparable: logrus timestamps and the program name removed. */
const diagnostics = (stderr: string) =>
  stderr
    .replace(/^time="[^"]*" /gm, "")
    .replace(/^(ctr|berthctl): /gm, "")
    .replace(/^WARNING: (version|revision) mismatch\n/gm, "");

/** content ls rows as [digest, size, sorted labels]: the AGE column moves with the clock, and ctr prints labels in map order. */
const contentRows = (out: string) =>
  out
    .trimEnd()
    .split("\n")
    .slice(1)
    .map((line) => {
      const cells = line.split(/\t+/);
      return [cells[0], cells[1], cells[cells.length - 1]!.split(",").sort().join(",")];
    });

before(async () => {
  for (const name of ["berthd", "content", "images", "berthctl"]) {
    assert.ok(existsSync(join(distDir, `${name}.js`)), `dist/${name}.js is built`);
  }
  d = await startDaemon();
});

after(async () => {
  closeChannels();
  await d?.destroy();
});

/**
 * berthctl with a preload that reports at exit whether the CLI bundle (dist/berthctl-cli.js)
 * and node:http2 (grpc-js's transport) were loaded.
 */
function probed(args: string[], input?: string, env: NodeJS.ProcessEnv = process.env) {
  const probe =
    "data:text/javascript," +
    encodeURIComponent(
      'import { registerHooks } from "node:module"; let cli = false;' +
        "registerHooks({ resolve(s, c, next) { const r = next(s, c); cli ||= r.url.endsWith('/berthctl-cli.js'); return r; } });" +
        'process.on("exit", () => process.stderr.write(`[cli=${cli} http2=${process.moduleLoadList.includes("NativeModule http2")}]`));',
    );
  const r = run(process.execPath, ["--import", probe, join(distDir, "berthctl.js"), ...args], input, env);
  const marker = /\[cli=(true|false) http2=(true|false)\]$/.exec(r.stderr);
  assert.ok(marker, `no probe report in: ${r.stderr}`);
  return { ...r, cli: marker[1] === "true", http2: marker[2] === "true", stderr: r.stderr.slice(0, marker.index) };
}

describe("version", () => {
  test("berthctl version shows the server ctr sees", () => {
    const mine = ok(berthctl(["version"]));
    const theirs = ok(ctr(["version"]));
    const server = (out: string) => out.slice(out.indexOf("Server:"));
    assert.match(server(mine.stdout), /^Server:\n {2}Version: {2}v\S+\n {2}Revision: \S+\n {2}UUID: [0-9a-f-]{36}\n$/);
    assert.equal(server(mine.stdout), server(theirs.stdout));
    assert.match(mine.stdout, /^Client:\n {2}Version: {2}v\S+\n {2}Revision: \S+\n {2}Node version: v\d+/);
  });

  test("version takes the fast path (not the CLI bundle) and prints what the full command prints", () => {
    const fast = probed(["--address", d.address, "-n", "default", "version"]);
    assert.deepEqual([fast.code, fast.stderr, fast.cli, fast.http2], [0, "", false, false]);
    // --timeout is not something the fast path handles: the full command runs.
    const full = probed(["--address", d.address, "--timeout", "30s", "version"]);
    assert.deepEqual([full.code, full.stderr, full.cli], [0, "", true]);
    assert.equal(fast.stdout, full.stdout);
    assert.match(fast.stdout, /UUID: [0-9a-f-]{36}\n$/);

    // The address from --address=… or from BERTH_ADDRESS, as the full command reads them.
    const inline = probed([`--address=${d.address}`, "version"]);
    assert.deepEqual([inline.stdout, inline.cli], [fast.stdout, false]);
    const fromEnv = probed(["version"], undefined, { ...process.env, BERTH_ADDRESS: d.address });
    assert.deepEqual([fromEnv.stdout, fromEnv.cli], [fast.stdout, false]);
  });

  test("when the fast path fails, the full command reports the error", () => {
    const missing = join(d.base, "nowhere.sock");
    const r = probed(["-a", missing, "version"]);
    assert.equal(r.code, 1);
    assert.ok(r.cli);
    // Printed once (by the full command), with its error.
    assert.match(r.stdout, /^Client:\n(?:.*\n){4}$/);
    assert.match(r.stderr, new RegExp(`^berthctl: failed to dial "${missing.replace(/[.]/g, "\\.")}": .*ENOENT`));
    // Extra arguments are the full command's to judge.
    assert.equal(probed(["-a", d.address, "version", "extra"]).cli, true);
  });
});

describe("transport", () => {
  test("commands with unary and streamed answers run without grpc-js; streamed requests load it", () => {
    for (const args of [["namespaces", "ls"], ["images", "ls"], ["content", "ls"], ["snapshots", "ls"]]) {
      const r = probed(["-a", d.address, ...args]);
      assert.deepEqual([r.code, r.cli, r.http2], [0, true, false], `${args.join(" ")}: ${r.stderr}`);
    }
    const ingest = probed(["-a", d.address, "content", "ingest", "transport-test"], "some bytes");
    assert.deepEqual([ingest.code, ingest.http2], [0, true], ingest.stderr);
    // What went in over grpc-js comes back over the direct client.
    const got = probed(["-a", d.address, "content", "get", sha256Digest("some bytes")]);
    assert.deepEqual([got.stdout, got.http2], ["some bytes", false]);
  });
});

describe("namespaces", () => {
  test("create, label and ls agree between berthctl and ctr", () => {
    assert.equal(ok(berthctl(["namespaces", "create", "team", "a=b", "c=d"])).stdout, "");
    ok(ctr(["namespaces", "create", "other", "x=1"]));
    const mine = ok(berthctl(["namespaces", "ls"]));
    assert.equal(mine.stdout, ok(ctr(["namespaces", "ls"])).stdout);
    assert.match(mine.stdout, /^NAME +LABELS +\n/);
    assert.match(mine.stdout, /^team +a=b,c=d +$/m);
    assert.equal(ok(berthctl(["ns", "ls", "-q"])).stdout, ok(ctr(["ns", "ls", "-q"])).stdout);

    ok(berthctl(["namespaces", "label", "team", "a=", "e=f"]));
    assert.match(ok(ctr(["namespaces", "ls"])).stdout, /^team +c=d,e=f +$/m);
    ok(ctr(["namespaces", "label", "team", "c="]));
    assert.match(ok(berthctl(["namespace", "list"])).stdout, /^team +e=f +$/m);
    assert.equal(ok(berthctl(["ns", "ls"])).stdout, ok(ctr(["ns", "ls"])).stdout);
  });

  test("rm prints each name, also one that does not exist, like ctr", () => {
    const r = ok(berthctl(["namespaces", "rm", "team", "other", "never-was"]));
    assert.equal(r.stdout, "team\nother\nnever-was\n");
    const left = ok(ctr(["namespaces", "ls", "-q"])).stdout.split("\n");
    assert.ok(!left.includes("team") && !left.includes("other"), left.join(","));
  });

  test("errors: a duplicate, a missing name, a namespace that still holds objects", () => {
    ok(berthctl(["ns", "create", "dup"]));
    const dup = berthctl(["ns", "create", "dup"]);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /^berthctl: .*already exists\n$/);
    assert.equal(diagnostics(dup.stderr), diagnostics(ctr(["ns", "create", "dup"]).stderr));
    ok(berthctl(["ns", "rm", "dup"]));

    const none = berthctl(["ns", "create"]);
    assert.deepEqual([none.code, none.stderr], [1, "berthctl: please specify a namespace\n"]);

    ok(ctr(["content", "ingest", "keep-ns-busy"], "busy", "busy"));
    const busy = berthctl(["ns", "rm", "busy"]);
    assert.equal(busy.code, 1);
    assert.equal(busy.stdout, "");
    assert.match(busy.stderr, /level=error msg="unable to delete busy"/);
    assert.match(busy.stderr, /^berthctl: unable to delete busy: .*failed precondition\n/m);
    assert.equal(diagnostics(busy.stderr), diagnostics(ctr(["ns", "rm", "busy"]).stderr));
  });
});

describe("content", () => {
  const big = randomBytes(2 * 1024 * 1024 + 12345); // several 1 MiB write messages
  const bigDigest = sha256Digest(big);
  const small = Buffer.from("hello from ctr\n");
  const smallDigest = sha256Digest(small);

  test("ingest with berthctl, get with ctr (and the other way round)", () => {
    assert.equal(ok(berthctl(["content", "ingest", "big-blob"], big)).stdout, "");
    assert.ok(ctrRaw(["content", "get", bigDigest]).equals(big), "ctr reads what berthctl wrote");
    assert.ok(berthctlRaw(["content", "get", bigDigest]).equals(big));

    ok(ctr(["content", "ingest", "small-blob"], small));
    assert.ok(berthctlRaw(["content", "get", smallDigest]).equals(small), "berthctl reads what ctr wrote");
  });

  test("ls shows the same blobs, sizes and labels as ctr's", () => {
    const mine = ok(berthctl(["content", "ls"]));
    const theirs = ok(ctr(["content", "ls"]));
    assert.match(mine.stdout, /^DIGEST\t+SIZE\t+AGE\t+LABELS\n/);
    assert.deepEqual(contentRows(mine.stdout), contentRows(theirs.stdout));
    assert.deepEqual(
      contentRows(mine.stdout).filter(([digest]) => digest === bigDigest),
      [[bigDigest, "2.109MB", "-"]],
    );
    assert.equal(ok(berthctl(["content", "ls", "-q"])).stdout, ok(ctr(["content", "ls", "-q"])).stdout);
  });

  test("labels set by one tool are seen by the other; an empty value removes a label", () => {
    assert.equal(ok(berthctl(["content", "label", smallDigest, "b=2", "a=1"])).stdout, "a=1,b=2\n");
    assert.match(ok(ctr(["content", "ls", `labels.a==1`])).stdout, new RegExp(`^${smallDigest}\\t`, "m"));
    ok(ctr(["content", "label", smallDigest, "c.d/e=3"]));
    assert.deepEqual(
      contentRows(ok(berthctl(["content", "ls", "labels.b"])).stdout),
      [[smallDigest, "15B", "a=1,b=2,c.d/e=3"]],
    );
    assert.equal(ok(berthctl(["content", "label", smallDigest, "a="])).stdout, "b=2,c.d/e=3\n");
    assert.equal(ok(berthctl(["content", "label", smallDigest])).stdout, "b=2,c.d/e=3\n", "no labels given: shows them");
    assert.deepEqual(contentRows(ok(berthctl(["content", "ls"])).stdout), contentRows(ok(ctr(["content", "ls"])).stdout));
  });

  test("ingest checks --expected-digest and --expected-size like ctr", () => {
    const wrong = sha256Digest("something else");
    const mismatch = berthctl(["content", "ingest", "--expected-digest", wrong, "mismatch"], "abc");
    assert.equal(mismatch.code, 1);
    assert.match(mismatch.stderr, /^berthctl: failed commit on ref "mismatch": commit failed: .*failed precondition\n$/);
    assert.equal(ctr(["content", "get", sha256Digest("abc")]).code, 1, "nothing committed");

    const short = berthctl(["content", "ingest", "--expected-size", "10", "short"], "abc");
    assert.deepEqual([short.code, short.stderr], [1, "berthctl: failed to read expected number of bytes: unexpected EOF\n"]);

    const exact = ok(berthctl(["content", "ingest", "--expected-size", "3", "--expected-digest", sha256Digest("xyz"), "exact"], "xyz"));
    assert.equal(exact.stdout, "");
    assert.equal(ok(ctr(["content", "get", sha256Digest("xyz")])).stdout, "xyz");
    // The digest is already there: success without sending anything.
    ok(berthctl(["content", "ingest", "--expected-digest", sha256Digest("xyz"), "exact-again"], "xyz"));

    const badDigest = berthctl(["content", "ingest", "--expected-digest", "md5:abc", "r"], "abc");
    assert.deepEqual([badDigest.code, badDigest.stderr], [1, "berthctl: invalid checksum digest format\n"]);
    const noRef = berthctl(["content", "ingest"], "abc");
    assert.deepEqual([noRef.code, noRef.stderr], [1, "berthctl: must specify a transaction reference\n"]);
  });

  test("ingest resumes an interrupted write, skipping the bytes the server already holds", async () => {
    const data = randomBytes(300 * 1024);
    const held = 100 * 1024;
    // Start the ingest over gRPC and end the stream after the first part, without a commit.
    const content = grpcClient(ContentDefinition, d.address);
    const gates = [Promise.withResolvers<void>(), Promise.withResolvers<void>()];
    // Lockstep like a real client: each request goes out after the previous reply.
    const requests = async function* (): AsyncGenerator<DeepPartial<WriteContentRequest>> {
      yield { action: WriteAction.STAT, ref: "resume-me", total: BigInt(data.length) };
      await gates[0]!.promise;
      yield { action: WriteAction.WRITE, offset: 0n, data: data.subarray(0, held) };
      await gates[1]!.promise;
    };
    const offsets: bigint[] = [];
    for await (const reply of content.write(requests(), inNamespace("default"))) {
      gates[offsets.length]?.resolve();
      offsets.push(reply.offset);
    }
    assert.deepEqual(offsets, [0n, BigInt(held)]);
    const status = await content.status({ ref: "resume-me" }, inNamespace("default"));
    assert.equal(status.status?.offset, BigInt(held), "the server kept the partial ingest");
    // The first `held` bytes on stdin are garbage: only a client that skips them gets the right digest.
    const input = Buffer.concat([Buffer.alloc(held, 0x55), data.subarray(held)]);
    // (If the server still holds the dropped stream's lock, berthctl retries the open.)
    ok(berthctl(["content", "ingest", "--expected-size", String(data.length), "--expected-digest", sha256Digest(data), "resume-me"], input), "resumed ingest");
    assert.ok(ctrRaw(["content", "get", sha256Digest(data)]).equals(data));
  });

  test("rm deletes, ignores missing blobs, and stops at a malformed digest like ctr", () => {
    const missing = sha256Digest("never stored");
    const r = ok(berthctl(["content", "rm", bigDigest, missing]));
    assert.equal(r.stdout, `${bigDigest}\n`);
    assert.equal(ctr(["content", "get", bigDigest]).code, 1);

    const bad = berthctl(["content", "rm", "not-a-digest"]);
    assert.equal(bad.code, 1);
    assert.equal(diagnostics(bad.stderr), diagnostics(ctr(["content", "rm", "not-a-digest"]).stderr));

    const get = berthctl(["content", "get", missing]);
    assert.equal(get.code, 1);
    assert.equal(diagnostics(get.stderr), diagnostics(ctr(["content", "get", missing]).stderr));
    assert.match(get.stderr, /^berthctl: content digest sha256:[0-9a-f]{64}: not found\n$/);
  });
});

describe("images", () => {
  const amd = tinyImage("amd", "amd64");
  const arm = tinyImage("arm", "aarch64");
  const index = twoPlatformIndex(amd.manifest, arm.manifest);
  const images = () => grpcClient(ImagesDefinition, d.address);
  const target = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: BigInt(b.size) });

  before(async () => {
    for (const b of [...amd.blobs, ...arm.blobs, index]) ok(ctr(["content", "ingest", `img-${b.digest.slice(7, 19)}`], b.data));
    const create = (name: string, t: ReturnType<typeof target>, labels: Record<string, string> = {}) =>
      images().create({ image: { name, labels, target: t } }, inNamespace("default"));
    await create("docker.io/library/tiny:amd", target(amd.manifest));
    await create("docker.io/library/tiny:arm", target(arm.manifest), { "org.example/team": "infra", tier: "gold" });
    await create("example.com/multi:1", target(index));
    // Its manifest is not in the content store: both tools log and print "-".
    await create("gone:1", { mediaType: ociManifestType, digest: sha256Digest("absent"), size: 1234n });
    await create("odd:1", { mediaType: "application/x-not-a-manifest", digest: amd.layer.digest, size: BigInt(amd.layer.size) });
  });

  test("ls prints exactly what ctr prints (sizes, platforms, labels, warnings)", () => {
    const mine = ok(berthctl(["images", "ls"]));
    const theirs = ok(ctr(["images", "ls"]));
    assert.equal(mine.stdout, theirs.stdout);
    assert.equal(diagnostics(mine.stderr), diagnostics(theirs.stderr));
    assert.match(mine.stdout, /^REF +TYPE +DIGEST +SIZE +PLATFORMS +LABELS +\n/);
    assert.match(mine.stdout, /^example\.com\/multi:1 +application\/vnd\.oci\.image\.index\.v1\+json +sha256:\S+ +[\d.]+ KiB +linux\/amd64,linux\/arm64\/v8 +- +$/m);
    assert.match(mine.stdout, /^docker\.io\/library\/tiny:arm +\S+ +\S+ +[\d.]+ KiB +linux\/arm64 +org\.example\/team=infra,tier=gold +$/m);
    assert.match(mine.stdout, /^gone:1 +\S+ +\S+ +1\.2 KiB +- +- +$/m);
    assert.match(mine.stderr, /level=error msg="failed calculating size for image gone:1" error="content digest sha256:[0-9a-f]{64}: not found"/);

    for (const filter of ["name~=^docker.io", "labels.tier==gold", `target.mediatype==${ociIndexType}`]) {
      assert.equal(ok(berthctl(["images", "ls", filter])).stdout, ok(ctr(["images", "ls", filter])).stdout, filter);
      assert.equal(ok(berthctl(["images", "ls", "-q", filter])).stdout, ok(ctr(["images", "ls", "-q", filter])).stdout, filter);
    }
    assert.equal(ok(berthctl(["i", "list", "-q"])).stdout, "docker.io/library/tiny:amd\ndocker.io/library/tiny:arm\nexample.com/multi:1\ngone:1\nodd:1\n");
  });

  test("tag: new names, a refused existing name, --force", () => {
    const r = ok(berthctl(["images", "tag", "docker.io/library/tiny:amd", "tiny:2", "tiny:3"]));
    assert.equal(r.stdout, "tiny:2\ntiny:3\n");
    const rows = ok(ctr(["images", "ls", "name~=^tiny:"])).stdout.trimEnd().split("\n").slice(1).map((l) => l.split(/\s+/).slice(0, 3));
    assert.deepEqual(rows, [
      ["tiny:2", ociManifestType, amd.manifest.digest],
      ["tiny:3", ociManifestType, amd.manifest.digest],
    ]);

    const again = berthctl(["images", "tag", "example.com/multi:1", "tiny:2"]);
    assert.deepEqual([again.code, again.stderr], [1, 'berthctl: image "tiny:2": already exists\n']);
    const forced = ok(berthctl(["images", "tag", "--force", "example.com/multi:1", "tiny:2"]));
    assert.equal(forced.stdout, "tiny:2\n");
    assert.match(ok(ctr(["images", "ls", "name==tiny:2"])).stdout, new RegExp(`^tiny:2 +${ociIndexType.replace(/[.+]/g, "\\$&")} +${index.digest} `, "m"));

    const missing = berthctl(["images", "tag", "no-such:1", "x:1"]);
    assert.equal(missing.code, 1);
    assert.equal(diagnostics(missing.stderr), diagnostics(ctr(["images", "tag", "no-such:1", "x:1"]).stderr));
    const noTarget = berthctl(["images", "tag", "tiny:2"]);
    assert.deepEqual([noTarget.code, noTarget.stderr], [1, "berthctl: please provide an image reference to tag to\n"]);
  });

  test("label: set by berthctl, seen by ctr, and the other way round", () => {
    assert.equal(ok(berthctl(["images", "label", "tiny:3", "a=1"])).stdout, "a=1\n");
    assert.match(ok(ctr(["images", "ls", "name==tiny:3"])).stdout, /^tiny:3 .* a=1 +$/m);
    ok(ctr(["images", "label", "tiny:3", "b=2"]));
    assert.equal(ok(berthctl(["images", "label", "tiny:3"])).stdout, "a=1,b=2\n");
    assert.equal(ok(berthctl(["images", "label", "tiny:3", "a="])).stdout, "b=2\n");
    assert.equal(ok(berthctl(["images", "label", "--replace-all", "tiny:3", "c=3"])).stdout, "c=3\n");
    assert.equal(ok(berthctl(["images", "ls"])).stdout, ok(ctr(["images", "ls"])).stdout);

    const missing = berthctl(["images", "label", "no-such:1", "a=1"]);
    assert.equal(missing.code, 1);
    assert.equal(diagnostics(missing.stderr), diagnostics(ctr(["images", "label", "no-such:1", "a=1"]).stderr));
  });

  test("rm: removes, warns about a missing name and still exits 0", () => {
    const r = ok(berthctl(["images", "rm", "tiny:2", "no-such:1", "tiny:3"]));
    assert.equal(r.stdout, "tiny:2\ntiny:3\n");
    assert.match(r.stderr, /^time="[^"]+" level=warning msg="no-such:1: image not found"\n$/);
    assert.equal(diagnostics(r.stderr), diagnostics(ctr(["images", "rm", "no-such:1"]).stderr));
    assert.equal(ok(ctr(["images", "ls", "-q", "name~=^tiny:"])).stdout, "");
    ok(berthctl(["images", "delete", "--sync", "gone:1", "odd:1"]));
    assert.equal(ok(berthctl(["images", "ls"])).stdout, ok(ctr(["images", "ls"])).stdout);
    assert.equal(ok(ctr(["images", "ls", "-q"])).stdout, "docker.io/library/tiny:amd\ndocker.io/library/tiny:arm\nexample.com/multi:1\n");
  });
});

describe("global flags and failures", () => {
  test("--namespace and BERTH_NAMESPACE select the namespace", () => {
    ok(berthctl(["content", "ingest", "ns-blob"], "in team2", "team2"));
    const digest = sha256Digest("in team2");
    // Referenced, so that a collection another test triggers keeps it.
    ok(berthctl(["content", "label", digest, "containerd.io/gc.root=test"], undefined, "team2"));
    assert.equal(ok(ctr(["content", "ls", "-q"], undefined, "team2")).stdout, `${digest}\n`);
    const env = run(process.execPath, [join(distDir, "berthctl.js"), "-a", d.address, "content", "ls", "-q"], undefined, {
      ...process.env,
      BERTH_NAMESPACE: "team2",
    });
    assert.equal(ok(env).stdout, `${digest}\n`);
    const viaEnvAddress = run(process.execPath, [join(distDir, "berthctl.js"), "-n", "team2", "content", "ls", "-q"], undefined, {
      ...process.env,
      BERTH_ADDRESS: d.address,
    });
    assert.equal(ok(viaEnvAddress).stdout, `${digest}\n`);
  });

  test("server errors print the status message alone, with exit code 1", () => {
    const r = berthctl(["images", "ls"], undefined, "bad namespace!");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berthctl: failed to list images: namespace "bad namespace!" .*: invalid argument\n$/);
    assert.doesNotMatch(r.stderr, /containerd\.services|\/Images\/List/);
  });

  test("an unreachable socket and a malformed --timeout fail cleanly", () => {
    const missing = join(d.base, "nowhere.sock");
    const r = run(process.execPath, [join(distDir, "berthctl.js"), "-a", missing, "namespaces", "ls"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`^berthctl: failed to dial "${missing.replace(/[.]/g, "\\.")}": .*ENOENT`));
    const timeout = berthctl(["--timeout", "soon", "namespaces", "ls"]);
    assert.deepEqual([timeout.code, timeout.stderr], [1, 'berthctl: invalid value "soon" for flag -timeout: parse error\n']);
    ok(berthctl(["--timeout", "30s", "namespaces", "ls"]));
  });
});
