// Calls berthd answers itself (services/gateway/local-calls.ts, store-reads.ts): the
// answers are the owning services' (errors included, with the same codes and words),
// on-demand processes are not started for them, a large Content Read still streams
// from the content process, and requests a gRPC server would refuse are refused with a
// status naming the problem. Raw HTTP/2 requests, so malformed frames can be sent.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { Status } from "nice-grpc";
import { closeFreshChannels, freshClient, ok, startDaemon, type Daemon } from "./harness.ts";
import { waitUntil } from "./fixtures/poll.ts";
import { grpcFrame } from "./grpc-burst.ts";
import { inNamespace } from "../core/grpc-client.ts";
import { ContentDefinition, InfoRequest } from "../core/gen/containerd/services/content/v1/content.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { NamespacesDefinition } from "../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { GetNamespaceRequest } from "../core/gen/containerd/services/namespaces/v1/namespace.ts";

const infoPath = "/containerd.services.content.v1.Content/Info";
const namespacesGet = "/containerd.services.namespaces.v1.Namespaces/Get";
const small = Buffer.from("a small blob, answered by berthd\n");
// Above the 64 KiB berthd reads itself.
const large = Buffer.alloc(300 * 1024, 0x5a);
const digestOf = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

interface RawOutcome {
  status: string | undefined;
  message: string;
}

/** One call with `body` sent as it is (no framing added); grpc-message as a Go client reads it (percent-decoded). */
function rawCall(address: string, path: string, body: Buffer, headers: Record<string, string> = {}): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(address) });
    session.on("error", () => {});
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", "containerd-namespace": "default", ...headers });
    const outcome: RawOutcome = { status: undefined, message: "" };
    const take = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] === undefined) return;
      outcome.status = String(h["grpc-status"]);
      outcome.message = decodeURIComponent(String(h["grpc-message"] ?? ""));
    };
    stream.on("response", take);
    stream.on("trailers", take);
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => {
      session.destroy();
      resolve(outcome);
    });
    stream.end(body);
  });
}

describe("calls berthd answers itself", () => {
  let d: Daemon;

  before(async () => {
    d = await startDaemon({ env: { BERTH_IDLE_EXIT_MS: "1000" } });
    ok(d.ctr(["content", "ingest", "small"], small), "ingest small");
    ok(d.ctr(["content", "ingest", "large"], large), "ingest large");
  });

  after(async () => {
    closeFreshChannels();
    await d?.destroy();
  });

  test("Content Info and a small Read are answered without starting the content process", async () => {
    await waitUntil("content retired", () => d.servicePid("content") === undefined);
    const content = freshClient(ContentDefinition, d.address);
    const { info } = await content.info({ digest: digestOf(small) }, inNamespace("default"));
    assert.equal(info?.size, BigInt(small.length));
    const chunks: Uint8Array[] = [];
    for await (const reply of content.read({ digest: digestOf(small), offset: 5n, size: 0n }, inNamespace("default"))) chunks.push(reply.data);
    assert.deepEqual(Buffer.concat(chunks), small.subarray(5));
    assert.equal(d.servicePid("content"), undefined, "content is not started for them");
  });

  test("a Read above 64 KiB streams from the content process, whole", async () => {
    const content = freshClient(ContentDefinition, d.address);
    const chunks: Uint8Array[] = [];
    for await (const reply of content.read({ digest: digestOf(large), offset: 0n, size: 0n }, inNamespace("default"))) chunks.push(reply.data);
    assert.ok(Buffer.concat(chunks).equals(large), "the large blob read back");
    assert.ok(d.servicePid("content"), "the content process served it");
  });

  test("Images Get starts snapshots in the background (ctr run prepares one next), not images", async () => {
    await waitUntil("every on-demand process retired", () => ["content", "images", "snapshots"].every((name) => d.servicePid(name) === undefined));
    const images = freshClient(ImagesDefinition, d.address);
    const err = await images.get({ name: "docker.io/library/none:latest" }, inNamespace("default")).catch((e: unknown) => e);
    assert.equal((err as { code?: number }).code, Status.NOT_FOUND);
    assert.match(String((err as Error).message), /image "docker.io\/library\/none:latest": not found/);
    await waitUntil("snapshots started", () => d.servicePid("snapshots") !== undefined);
    assert.equal(d.servicePid("images"), undefined, "images is not started for a Get");
  });

  test("errors keep the services' codes and words: a missing blob, no namespace, a bad digest", async () => {
    const missing = await rawCall(d.address, infoPath, grpcFrame(InfoRequest.encode({ digest: digestOf(Buffer.from("absent")) }).finish()));
    assert.equal(missing.status, String(Status.NOT_FOUND));
    assert.match(missing.message, /content digest sha256:[0-9a-f]{64}: not found/);
    const noNamespace = await rawCall(d.address, infoPath, grpcFrame(InfoRequest.encode({ digest: digestOf(small) }).finish()), { "containerd-namespace": "" });
    assert.equal(noNamespace.status, String(Status.FAILED_PRECONDITION));
    assert.match(noNamespace.message, /namespace is required/);
    const badDigest = await rawCall(d.address, infoPath, grpcFrame(InfoRequest.encode({ digest: "sha256:nothex" }).finish()));
    assert.equal(badDigest.status, String(Status.INVALID_ARGUMENT), badDigest.message);
    const namespaces = freshClient(NamespacesDefinition, d.address);
    const err = await namespaces.get({ name: "no-such-namespace" }).catch((e: unknown) => e);
    assert.equal((err as { code?: number }).code, Status.NOT_FOUND);
    // grpc-js clients decode grpc-message with decodeURI: a ":" must come through as itself.
    assert.match((err as { details?: string }).details ?? "", /namespace "no-such-namespace": not found/);
  });

  test("malformed requests are refused naming the problem", async () => {
    const request = GetNamespaceRequest.encode({ name: "default" }).finish();
    const short = await rawCall(d.address, namespacesGet, Buffer.from([0, 0, 0]));
    assert.equal(short.status, String(Status.INTERNAL));
    assert.match(short.message, /malformed gRPC request: no message frame/);
    const twoMessages = await rawCall(d.address, namespacesGet, Buffer.concat([grpcFrame(request), grpcFrame(request)]));
    assert.equal(twoMessages.status, String(Status.INTERNAL));
    assert.match(twoMessages.message, /expected exactly one message/);
    const compressed = grpcFrame(request);
    compressed[0] = 1;
    const flagged = await rawCall(d.address, namespacesGet, compressed);
    assert.equal(flagged.status, String(Status.UNIMPLEMENTED));
    assert.match(flagged.message, /compressed gRPC requests are not supported/);
    const garbage = await rawCall(d.address, namespacesGet, grpcFrame(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])));
    assert.equal(garbage.status, String(Status.INTERNAL));
    assert.match(garbage.message, /cannot decode the request/);
    const huge = await rawCall(d.address, namespacesGet, Buffer.alloc(4 * 1024 * 1024 + 64));
    assert.equal(huge.status, String(Status.RESOURCE_EXHAUSTED));
    assert.match(huge.message, /larger than the 4194304-byte limit/);
    // The gateway still answers.
    const fine = await rawCall(d.address, namespacesGet, grpcFrame(request));
    assert.equal(fine.status, "0", fine.message);
  });
});
