// The distribution client when things go wrong, against a real docker-registry behind
// FaultProxy (a fake-registry wrapper that forwards or injects faults): dropped
// connections resume with Range, wrong or short blobs commit nothing, HTML error
// pages, 5xx retries, 4xx not retried, 401 loops bounded, oversized manifests
// refused, and mirrors tried first with a fall back.
import { test, describe, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IncomingMessage } from "node:http";
import { startDaemon, type Daemon } from "./harness.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { blobInfo, RequestQueue, updateBlobLabels } from "../core/content-client.ts";
import { sha256Digest } from "../core/digest.ts";
import { WriteAction, type DeepPartial, type WriteContentRequest } from "../core/gen/containerd/services/content/v1/content.ts";
import { BerthError } from "../core/errors.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { callOptions, type ImageServices } from "../core/image/services.ts";
import { mediaTypes } from "../core/image/media-types.ts";
import { RegistryClient, blobExists, mergeScopes, parseChallenges, retryAfterMs, pushImage, fetchBlob, ingestRef, parseRegistryReference, pullImage, pushBlob, pushManifest, resolve, withRetry, type PullEvent, type RegistryClientOptions } from "../core/registry/index.ts";
import { blobOf, imageFromLayers, type ImageParts } from "./fixtures/archives.ts";
import { FaultProxy, TestRegistry, freePort, storeImage, type Fault } from "./fixtures/registry.ts";

let d: Daemon;
let registry: TestRegistry;
let proxy: FaultProxy;
let work: string;
/** The image under test, uploaded straight to the registry (not through berthd) with fresh random bytes for every test: no namespace, nor the shared store, has its layer yet. */
let img: ImageParts;
const clients: RegistryClient[] = [];
const repo = "faults/busybox";

function client(options: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ certsDir: join(work, "no-certs"), credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 }, ...options });
  clients.push(c);
  return c;
}

const ns = (namespace: string): ImageServices => connectImageServices(d.address, namespace);
const layer = () => img.layers[0]!;
const isLayerGet = (req: IncomingMessage) => req.method === "GET" && req.url === `/v2/${repo}/blobs/${layer().digest}`;
const requests = (pattern: RegExp) => proxy.log.filter((r) => pattern.test(`${r.method} ${r.url}`));

/** Nothing of the failed pull is left in the namespace: no blob, no ingest, no image. */
async function assertNothingCommitted(svc: ImageServices): Promise<void> {
  assert.equal(await blobInfo(svc.content, layer().digest, callOptions(svc)), undefined, "the layer was not committed");
  const { statuses } = await svc.content.listStatuses({ filters: [] }, callOptions(svc));
  assert.deepEqual(statuses.map((s) => s.ref), [], "no ingest is left behind");
  const { images } = await svc.images.list({ filters: [] }, callOptions(svc));
  assert.deepEqual(images, []);
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-registry-faults-"));
  d = await startDaemon();
  registry = await TestRegistry.start(join(work, "registry"));
  proxy = await FaultProxy.start(registry.port);
});

beforeEach(async () => {
  proxy.rule = undefined;
  proxy.log.length = 0;
  await publish(600_000);
});

after(async () => {
  for (const c of clients) await c.close();
  closeChannels();
  await proxy?.stop();
  await registry?.stop();
  await d?.destroy();
  rmSync(work, { recursive: true, force: true });
});

describe("blob faults", () => {
  test("a connection dropped mid-blob resumes with a Range request and completes", async () => {
    let cut = false;
    proxy.rule = (req) => {
      if (!isLayerGet(req) || cut) return undefined;
      cut = true;
      return { cutAfter: 100_000 };
    };
    const events: PullEvent[] = [];
    const svc = ns("resumed");
    const pulled = await pullImage(client(), svc, `${proxy.host}/${repo}:1`, { onProgress: (e) => events.push(e) });
    assert.equal(pulled.image.root.digest, img.manifest.digest);
    const resumes = events.filter((e) => e.type === "resume");
    assert.equal(resumes.length, 1);
    const offset = resumes[0]!.type === "resume" ? resumes[0]!.offset : -1;
    assert.ok(offset > 0 && offset <= 100_000, `resumed at ${offset}`);
    assert.deepEqual(proxy.log.filter((r) => r.range).map((r) => r.range), [`bytes=${offset}-`]);
    const received = events.flatMap((e) => (e.type === "progress" && e.descriptor.digest === layer().digest ? [e.received] : []));
    assert.ok(received.length > 1 && received.every((n, i) => i === 0 || n > received[i - 1]!), "progress rises across the resume");
    assert.equal(received.at(-1), layer().size);
    const info = await blobInfo(svc.content, layer().digest, callOptions(svc));
    assert.equal(Number(info?.size), layer().size);
  });

  test("a layer that repeats in a manifest is fetched once", async () => {
    const repeated = imageFromLayers([layer(), layer()], [layer().digest, layer().digest]);
    const target = parseRegistryReference(`${registry.host}/${repo}:twice`);
    await pushBlob(client(), target, repeated.config, (async function* () { yield repeated.config.data; })());
    await pushManifest(client(), target, "twice", repeated.manifest, repeated.manifest.data);
    const svc = ns("repeated");
    const pulled = await pullImage(client(), svc, `${proxy.host}/${repo}:twice`);
    assert.deepEqual(pulled.fetched.sort(), [repeated.config.digest, layer().digest].sort());
    assert.equal(requests(/blobs/).filter((r) => r.url.endsWith(layer().digest)).length, 1);
    const manifestInfo = await blobInfo(svc.content, repeated.manifest.digest, callOptions(svc));
    assert.equal(manifestInfo?.labels["containerd.io/gc.ref.content.l.1"], layer().digest);
  });

  test("a server that ignores the Range header resends from byte 0; the bytes already held are skipped", async () => {
    let cut = false;
    proxy.rule = (req) => {
      if (!isLayerGet(req)) return undefined;
      if (!cut) {
        cut = true;
        return { cutAfter: 100_000 };
      }
      return { dropHeaders: ["range"] };
    };
    const events: PullEvent[] = [];
    const svc = ns("range-ignored");
    await pullImage(client(), svc, `${proxy.host}/${repo}:1`, { onProgress: (e) => events.push(e) });
    assert.equal(events.filter((e) => e.type === "resume").length, 1);
    const info = await blobInfo(svc.content, layer().digest, callOptions(svc));
    assert.equal(Number(info?.size), layer().size);
  });

  test("a blob whose bytes do not match its digest is refused and nothing is committed", async () => {
    proxy.rule = (req) => (isLayerGet(req) ? { rewrite: (body) => Buffer.concat([body.subarray(0, 1000), Buffer.from([body[1000]! ^ 0xff]), body.subarray(1001)]) } : undefined);
    const svc = ns("corrupt");
    await assert.rejects(pullImage(client(), svc, `${proxy.host}/${repo}:1`), (err: unknown) => {
      assert.ok(err instanceof BerthError, String(err));
      assert.equal(err.kind, "failed precondition");
      // The content service's check at commit (the stream into it does not hash twice).
      assert.match(err.message, new RegExp(`blob ${layer().digest} from ${proxy.host}/${repo}: .*unexpected commit digest sha256:[0-9a-f]{64}, expected ${layer().digest}.*; nothing was committed`));
      return true;
    });
    await assertNothingCommitted(svc);
  });

  test("a blob the server keeps cutting short fails as truncated and nothing is committed", async () => {
    proxy.rule = (req) => (isLayerGet(req) ? { rewrite: (body) => body.subarray(0, Math.max(0, body.length - 1000)) } : undefined);
    const svc = ns("truncated");
    await assert.rejects(pullImage(client(), svc, `${proxy.host}/${repo}:1`), (err: unknown) => {
      assert.ok(err instanceof BerthError, String(err));
      assert.match(err.message, new RegExp(`truncated: the registry sent ${layer().size - 1000} of ${layer().size} bytes after 1 resumes; nothing was committed`));
      return true;
    });
    assert.equal(requests(/blobs\/sha256/).filter((r) => r.url.endsWith(layer().digest)).length, 2, "one resume, then no more");
    await assertNothingCommitted(svc);
  });

  test("a blob longer than its descriptor is refused", async () => {
    proxy.rule = (req) => (isLayerGet(req) ? { rewrite: (body) => Buffer.concat([body, Buffer.from("extra")]) } : undefined);
    const svc = ns("too-long");
    await assert.rejects(pullImage(client(), svc, `${proxy.host}/${repo}:1`), /more than the \d+ bytes its descriptor names; nothing was committed/);
    await assertNothingCommitted(svc);
  });
});

/** What a crashed attempt leaves: an ingest under `ref` holding `data`, its stream gone. */
async function leaveIngest(svc: ImageServices, ref: string, data: Buffer, desc: { digest: string; size: number }): Promise<void> {
  const requests = new RequestQueue<DeepPartial<WriteContentRequest>>();
  const responses = svc.content.write(requests, callOptions(svc))[Symbol.asyncIterator]();
  requests.push({ action: WriteAction.WRITE, ref, offset: 0n, total: BigInt(desc.size), expected: desc.digest, data });
  await responses.next();
  requests.close();
  while (!(await responses.next()).done);
}

/** A new image of `size` random layer bytes, uploaded as repo:1. */
async function publish(size: number): Promise<void> {
  const layerBlob = blobOf(mediaTypes.ociLayer, randomBytes(size));
  img = imageFromLayers([layerBlob], [layerBlob.digest]);
  const c = client();
  const target = parseRegistryReference(`${registry.host}/${repo}:1`);
  for (const b of [img.config, layerBlob]) await pushBlob(c, target, b, (async function* () { yield b.data; })());
  await pushManifest(c, target, "1", img.manifest, img.manifest.data);
}

describe("resuming across attempts", () => {
  test("an attempt that lost its connection keeps the ingest; the next attempt carries on from its offset", async () => {
    // Big enough that the writer has confirmed at least one 1 MiB message before the failure.
    await publish(6 * 1024 * 1024);
    proxy.rule = (req) => (isLayerGet(req) ? { cutAfter: 2_500_000 } : undefined);
    const svc = ns("across-attempts");
    const c = client();
    const ref = parseRegistryReference(`${proxy.host}/${repo}:1`);
    await assert.rejects(fetchBlob(c, ref, layer(), svc.content, { call: callOptions(svc), maxResumes: 1 }), (err: unknown) => {
      assert.ok(err instanceof BerthError && err.kind === "unavailable", String(err));
      assert.match(err.message, /connection lost at \d+ of \d+ bytes after 1 resumes/);
      return true;
    });
    const { status } = await svc.content.status({ ref: ingestRef(layer()) }, callOptions(svc));
    const offset = Number(status?.offset);
    assert.ok(offset >= 1024 * 1024 && offset < layer().size, `the ingest holds ${offset} bytes`);

    proxy.rule = undefined;
    proxy.log.length = 0;
    const written = await fetchBlob(c, ref, layer(), svc.content, { call: callOptions(svc) });
    assert.equal(written.existed, false);
    // The dropped stream's last writes may still land after the status read: the resume starts at least there.
    const ranges = proxy.log.filter((r) => r.url.endsWith(layer().digest)).map((r) => r.range);
    assert.equal(ranges.length, 1);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(ranges[0] ?? "")?.[1]);
    assert.ok(resumedAt >= offset && resumedAt < layer().size, `only the missing bytes were fetched (from ${resumedAt}; the ingest held ${offset})`);
    const info = await blobInfo(svc.content, layer().digest, callOptions(svc));
    assert.equal(Number(info?.size), layer().size);
  });

  test("an earlier ingest holding wrong bytes fails the content service's digest check; nothing is committed", async () => {
    const svc = ns("bad-partial");
    await leaveIngest(svc, ingestRef(layer()), Buffer.alloc(100_000), layer());
    await assert.rejects(fetchBlob(client(), parseRegistryReference(`${proxy.host}/${repo}:1`), layer(), svc.content, { call: callOptions(svc) }), (err: unknown) => {
      assert.ok(err instanceof BerthError && err.kind === "failed precondition", String(err));
      assert.match(err.message, /unexpected commit digest sha256:[0-9a-f]+, expected sha256:[0-9a-f]+.*; nothing was committed/);
      return true;
    });
    assert.equal(proxy.log.at(-1)?.range, "bytes=100000-");
    await assertNothingCommitted(svc);
  });
});

describe("error answers", () => {
  test("an HTML error page reads as the status and the URL, not a JSON parse error; 5xx is retried", async () => {
    proxy.rule = (req) =>
      req.url?.includes("/manifests/")
        ? { respond: { status: 502, headers: { "content-type": "text/html" }, body: "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>" } }
        : undefined;
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:1`), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, "unavailable");
      assert.equal(err.message, `GET http://${proxy.host}/v2/${repo}/manifests/1: 502 Bad Gateway: the server answered with an HTML page, not a registry error ("502 Bad Gateway"): unavailable`);
      return true;
    });
    assert.equal(requests(/manifests/).length, 3, "three attempts in all");
  });

  test("5xx answers are retried until the registry answers", async () => {
    let failures = 2;
    proxy.rule = (req) => (req.url?.includes("/manifests/") && failures-- > 0 ? { respond: { status: 503, body: "busy" } } : undefined);
    const image = await resolve(client(), `${proxy.host}/${repo}:1`);
    assert.equal(image.root.digest, img.manifest.digest);
    assert.equal(requests(/manifests/).length, 3);
  });

  test("a 429's Retry-After is waited out (and a wait too long is not)", async () => {
    let limited = 1;
    proxy.rule = (req) => (req.url?.includes("/manifests/") && limited-- > 0 ? { respond: { status: 429, headers: { "retry-after": "1" }, body: "slow down" } } : undefined);
    const delays: number[] = [];
    const image = await resolve(client({ retry: { attempts: 3, baseDelayMs: 5, onRetry: (_err, _attempt, ms) => delays.push(ms) } }), `${proxy.host}/${repo}:1`);
    assert.equal(image.root.digest, img.manifest.digest);
    assert.deepEqual(delays, [1000]);
    proxy.rule = (req) => (req.url?.includes("/manifests/") ? { respond: { status: 503, headers: { "retry-after": "3600" } } } : undefined);
    proxy.log.length = 0;
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:1`), /503 Service Unavailable: unavailable/);
    assert.equal(requests(/manifests/).length, 1);
    assert.equal(retryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("Wed, 21 Oct 2015 07:27:00 GMT")), 60_000);
  });

  test("4xx answers are not retried", async () => {
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:missing`), (err: unknown) => err instanceof BerthError && err.kind === "not found");
    proxy.rule = (req) => (req.url?.includes("/manifests/") ? { respond: { status: 400, headers: { "content-type": "application/json" }, body: JSON.stringify({ errors: [{ code: "NAME_INVALID", message: "invalid repository name" }] }) } } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:1`), /400 Bad Request: NAME_INVALID: invalid repository name: invalid argument/);
    assert.equal(requests(/manifests/).length, 2, "one request each");
  });

  test("WWW-Authenticate challenges parse with quoted commas, escapes and several schemes", () => {
    assert.deepEqual(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push repository:c:pull"'), [
      { scheme: "bearer", params: { realm: "https://auth.example/token", service: "registry.example", scope: "repository:a/b:pull,push repository:c:pull" } },
    ]);
    assert.deepEqual(parseChallenges('Basic realm="say \\"hi\\"", Bearer realm=https://t.example/token,service=s'), [
      { scheme: "basic", params: { realm: 'say "hi"' } },
      { scheme: "bearer", params: { realm: "https://t.example/token", service: "s" } },
    ]);
    assert.deepEqual(parseChallenges(""), []);
    assert.deepEqual(mergeScopes(["repository:a:push", "repository:a:pull", "repository:b:pull", "repository:a:pull,push"]), ["repository:a:pull,push", "repository:b:pull"]);
  });

  test("the retry helper backs off on unavailable and gives up at once on anything else", async () => {
    let calls = 0;
    const value = await withRetry(async () => {
      if (++calls < 3) throw new BerthError("unavailable", "try again");
      return "done";
    }, { attempts: 5, baseDelayMs: 1 });
    assert.equal(value, "done");
    assert.equal(calls, 3);
    calls = 0;
    await assert.rejects(withRetry(async () => {
      calls++;
      throw new BerthError("failed precondition", "no");
    }, { attempts: 5, baseDelayMs: 1 }), /no: failed precondition/);
    assert.equal(calls, 1);
  });

  test("a registry that keeps answering 401 to a fresh token ends in a clear error after one retry", async () => {
    proxy.rule = (req): Fault => {
      if (req.url?.startsWith("/token")) return { respond: { status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify({ token: "never-accepted" }) } };
      return { respond: { status: 401, headers: { "www-authenticate": `Bearer realm="http://${proxy.host}/token",service="fake",scope="repository:${repo}:pull"`, "content-type": "application/json" }, body: JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }) } };
    };
    const c = client();
    await assert.rejects(resolve(c, `${proxy.host}/${repo}:1`), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, "failed precondition");
      assert.match(err.message, /^unauthorized: .*the registry refused the credentials/);
      return true;
    });
    assert.equal(requests(/manifests/).length, 2);
    assert.equal(requests(/token/).length, 1);
    assert.equal(c.auth.tokenRequests, 1);
  });

  test("a Basic challenge that keeps refusing the credentials is bounded too", async () => {
    proxy.rule = () => ({ respond: { status: 401, headers: { "www-authenticate": 'Basic realm="fake"' } } });
    await assert.rejects(resolve(client({ credentials: async () => ({ username: "u", password: "wrong" }) }), `${proxy.host}/${repo}:1`), /unauthorized: GET .*401 Unauthorized.*refused the credentials/);
    assert.equal(requests(/manifests/).length, 2);
    proxy.log.length = 0;
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:1`), /unauthorized: .*wants a user name and password, and there are no credentials for 127\.0\.0\.1:\d+/);
    assert.equal(requests(/manifests/).length, 1);
  });
});

describe("manifest limits and checks", () => {
  const big = JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociManifest, config: {}, layers: [], annotations: { pad: "x".repeat(5 * 1024 * 1024) } });

  test("a manifest over 4 MiB is refused, whether its length is declared or not", async () => {
    proxy.rule = (req) => (req.url?.endsWith("/manifests/declared") ? { respond: { status: 200, headers: { "content-type": mediaTypes.ociManifest }, body: big } } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:declared`), /manifest of \d+ bytes is larger than the 4 MiB limit: invalid argument/);
    proxy.rule = (req) => (req.url?.endsWith("/manifests/chunked") ? { respond: { status: 200, headers: { "content-type": mediaTypes.ociManifest, "transfer-encoding": "chunked" }, body: big } } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:chunked`), /manifest is larger than the 4 MiB limit: invalid argument/);
  });

  test("schema 1 manifests and bodies that are not JSON are refused by name", async () => {
    const schema1 = JSON.stringify({ schemaVersion: 1, name: repo, tag: "old", fsLayers: [{ blobSum: img.layers[0]!.digest }] });
    proxy.rule = (req) => (req.url?.endsWith("/manifests/old") ? { respond: { status: 200, headers: { "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws" }, body: schema1 } } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:old`), /manifest .*:old \(http:\/\/.*\): schema 1 manifests are not supported: invalid argument/);
    proxy.rule = (req) => (req.url?.endsWith("/manifests/text") ? { respond: { status: 200, headers: { "content-type": "text/plain" }, body: "hello" } } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:text`), /manifest .*:text \(http:\/\/.*\): not a JSON document \(Content-Type "text\/plain"\): invalid argument/);
  });

  test("a manifest fetched by tag must hash to the digest the registry names for it", async () => {
    proxy.rule = (req) => (req.url?.endsWith("/manifests/1") ? { rewrite: (body) => Buffer.from(body.toString().replace("}", " }")) } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}:1`), /digest mismatch: Docker-Content-Digest says sha256:[0-9a-f]{64}, the content hashes to sha256:[0-9a-f]{64}: failed precondition/);
  });

  test("a manifest fetched by digest must hash to that digest", async () => {
    proxy.rule = (req) => (req.url?.includes("/manifests/sha256:") ? { rewrite: (body) => Buffer.from(body.toString().replace("}", ' }')) } : undefined);
    await assert.rejects(resolve(client(), `${proxy.host}/${repo}@${img.manifest.digest}`), (err: unknown) => {
      assert.ok(err instanceof BerthError && err.kind === "failed precondition");
      assert.match(err.message, /digest mismatch: the registry sent content with digest sha256:/);
      return true;
    });
  });
});

describe("push faults", () => {
  test("a refused mount (202) becomes the upload session for the blob", async () => {
    const svc = ns("mount-refused");
    await storeImage(svc, img.blobs, "local:1", img.manifest);
    // A source the registry cannot mount from: the repository never had the blob.
    for (const b of [img.config, layer()]) await updateBlobLabels(svc.content, b.digest, { [`containerd.io/distribution.source.${proxy.host}`]: "nowhere/repo" }, callOptions(svc));
    const pushed = await pushImage(client(), svc, "local:1", `${proxy.host}/pushed/image:1`);
    assert.deepEqual(pushed.mounted, []);
    assert.deepEqual(pushed.uploaded.sort(), [img.config.digest, layer().digest].sort());
    const posts = requests(/^POST /).map((r) => r.url);
    assert.equal(posts.length, 2);
    assert.ok(posts.every((u) => u.includes("mount=") && u.includes("from=nowhere%2Frepo")), posts.join(", "));
    assert.equal(requests(/^PUT .*\/blobs\/uploads\//).length, 2, "each blob went into its mount's session");
    assert.equal((await resolve(client(), `${registry.host}/pushed/image:1`)).root.digest, img.manifest.digest);
  });

  test("after a refused mount the next known repository is tried; the refused session is cancelled", async () => {
    const svc = ns("mount-second");
    await storeImage(svc, img.blobs, "local:1", img.manifest);
    await updateBlobLabels(svc.content, layer().digest, { [`containerd.io/distribution.source.${proxy.host}`]: `aaa/none,${repo}` }, callOptions(svc));
    const pushed = await pushImage(client(), svc, "local:1", `${proxy.host}/pushed/second:1`);
    assert.deepEqual(pushed.mounted, [layer().digest]);
    assert.deepEqual(pushed.uploaded, [img.config.digest]);
    assert.equal(requests(/^DELETE .*\/blobs\/uploads\//).length, 1);
  });

  test("a push source with fewer or more bytes than its descriptor fails, naming the blob, and the upload is cancelled", async () => {
    const target = parseRegistryReference(`${proxy.host}/short/blob:1`);
    const data = randomBytes(4096);
    const desc = { mediaType: mediaTypes.ociLayer, digest: sha256Digest(data), size: data.length };
    await assert.rejects(pushBlob(client(), target, desc, (async function* () { yield data.subarray(0, 1000); })()), (err: unknown) => {
      assert.ok(err instanceof BerthError && err.kind === "invalid argument", String(err));
      assert.match(err.message, new RegExp(`blob ${desc.digest}: the source ended after 1000 of 4096 bytes`));
      return true;
    });
    await assert.rejects(pushBlob(client(), target, desc, (async function* () { yield Buffer.concat([data, data.subarray(0, 1000)]); })()), /the source has more than the 4096 bytes its descriptor names/);
    assert.equal(requests(/^DELETE .*\/blobs\/uploads\//).length, 2);
    assert.equal(requests(/^HEAD /).length, 0);
    const c = client();
    assert.equal(await blobExists(c, parseRegistryReference(`${registry.host}/short/blob:1`), desc), false, "nothing was stored");
  });
});

describe("cancelling", () => {
  test("a client's signal cancels a pull: canceled, nothing named, the ingest kept for a later attempt", async () => {
    const controller = new AbortController();
    // The layer's answer stops after 100 kB and never ends: the pull is waiting on it when cancelled.
    let stalled: (() => void) | undefined;
    proxy.rule = (req) => (isLayerGet(req) ? { stallAfter: 100_000, onStall: () => stalled?.() } : undefined);
    const waiting = new Promise<void>((resolve) => (stalled = resolve));
    const svc = ns("cancelled");
    const pull = pullImage(client({ signal: controller.signal }), svc, `${proxy.host}/${repo}:1`);
    await waiting;
    controller.abort();
    await assert.rejects(pull, (err: unknown) => {
      assert.ok(err instanceof BerthError, String(err));
      assert.equal(err.kind, "canceled");
      return true;
    });
    const { images } = await svc.images.list({ filters: [] }, callOptions(svc));
    assert.deepEqual(images, []);
    const { statuses } = await svc.content.listStatuses({ filters: [] }, callOptions(svc));
    assert.ok(statuses.some((st) => st.ref === ingestRef(layer())), "the layer's ingest stays for a later attempt");
  });
});

describe("redirects", () => {
  test("a blob served from elsewhere (307 to blob storage) is followed, without the registry's credentials", async () => {
    proxy.rule = (req) => (isLayerGet(req) ? { respond: { status: 307, headers: { location: `http://${registry.host}${req.url}` } } } : undefined);
    const svc = ns("redirected");
    const pulled = await pullImage(client(), svc, `${proxy.host}/${repo}:1`);
    assert.equal(pulled.image.root.digest, img.manifest.digest);
    assert.equal(requests(/blobs/).filter((r) => r.url.endsWith(layer().digest)).length, 1);
    const info = await blobInfo(svc.content, layer().digest, callOptions(svc));
    assert.equal(Number(info?.size), layer().size);
  });

  test("a redirect loop ends after a few hops", async () => {
    proxy.rule = (req) => (isLayerGet(req) ? { respond: { status: 302, headers: { location: req.url! } } } : undefined);
    await assert.rejects(pullImage(client(), ns("redirect-loop"), `${proxy.host}/${repo}:1`), /more than 5 redirects/);
    assert.equal(requests(/blobs/).filter((r) => r.url.endsWith(layer().digest)).length, 6);
  });
});

describe("mirrors", () => {
  test("a mirror serves a registry that is down", async () => {
    const deadRegistry = `127.0.0.1:${await freePort()}`;
    const c = client({ mirrors: { [deadRegistry]: [`http://${registry.host}`] } });
    const svc = ns("mirrored");
    const pulled = await pullImage(c, svc, `${deadRegistry}/${repo}:1`);
    assert.equal(pulled.image.root.digest, img.manifest.digest);
    assert.equal(pulled.image.name, `${deadRegistry}/${repo}:1`);
    const info = await blobInfo(svc.content, layer().digest, callOptions(svc));
    assert.equal(Number(info?.size), layer().size);
  });

  test("a mirror that lacks the image hands over to the registry", async () => {
    proxy.rule = () => ({ respond: { status: 404, headers: { "content-type": "application/json" }, body: JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }] }) } });
    const c = client({ mirrors: { [registry.host]: [`http://${proxy.host}`] } });
    const pulled = await pullImage(c, ns("fallback"), `${registry.host}/${repo}:1`);
    assert.equal(pulled.image.root.digest, img.manifest.digest);
    assert.ok(requests(/manifests\/1$/).length >= 1, "the mirror was asked first");
  });
});
