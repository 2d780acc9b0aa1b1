// The direct gRPC client against a real grpc-js server (nice-grpc) on a unix socket:
// answers, status errors, metadata, concurrency, responses over many frames, and the
// failures a caller must see as clean errors.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClientError, createServer, ServerError, Status, type Server } from "nice-grpc";
import { DirectChannel, DirectGrpcError, directClient } from "./grpc-direct.ts";
import { NamespacesDefinition } from "./gen/containerd/services/namespaces/v1/namespace.ts";
import { VersionDefinition } from "./gen/containerd/services/version/v1/version.ts";
import { IntrospectionDefinition } from "./gen/containerd/services/introspection/v1/introspection.ts";
import { ContentDefinition } from "./gen/containerd/services/content/v1/content.ts";
import { namespaceHeader } from "./headers.ts";
import { inNamespace } from "./grpc-status.ts";
import { closeChannels, grpcClient } from "./grpc-client.ts";

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("expected the call to fail");
}

async function clientError(promise: Promise<unknown>, code: Status): Promise<ClientError> {
  const err = await rejection(promise);
  assert.ok(err instanceof ClientError, `expected a ClientError, got ${String(err)}`);
  assert.equal(err.code, code, `${Status[err.code]}: ${err.details}`);
  return err;
}

describe("direct gRPC client", () => {
  let dir: string;
  let address: string;
  let server: Server;
  const channels: DirectChannel[] = [];
  const channel = () => {
    const c = new DirectChannel(address);
    channels.push(c);
    return c;
  };
  /** Labels large enough that a List response spans many 16 KiB frames and the 64 KiB default window. */
  const bigLabels = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`label-${i}`, "x".repeat(1000)]));
  let cancelled: () => void = () => {};
  let readCancelled: () => void = () => {};
  const mib = 1024 * 1024;
  /** Chunk i of a read: 1 MiB of the byte i. */
  const chunk = (i: number) => Buffer.alloc(mib, i);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "berth-direct-"));
    address = join(dir, "grpc.sock");
    server = createServer();
    server.add(VersionDefinition, {
      async version(_request, ctx) {
        return { version: "v9.9.9", revision: `ns=${ctx.metadata.get(namespaceHeader) ?? ""}` };
      },
    });
    server.add(NamespacesDefinition, {
      async get({ name }, ctx) {
        if (name === "slow") {
          // Holds the call until the client gives up.
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          cancelled();
          throw new ServerError(Status.CANCELLED, "gone");
        }
        if (name !== "present") throw new ServerError(Status.NOT_FOUND, `namespace "${name}": not found — ünïcødé`);
        return { namespace: { name, labels: { a: "1" } } };
      },
      async list() {
        return { namespaces: Array.from({ length: 5 }, (_, i) => ({ name: `ns-${i}`, labels: bigLabels })) };
      },
      async create() {
        throw new ServerError(Status.UNIMPLEMENTED, "not here");
      },
      async update() {
        throw new ServerError(Status.UNIMPLEMENTED, "not here");
      },
      async delete() {
        throw new ServerError(Status.UNIMPLEMENTED, "not here");
      },
    });
    const unimplemented = async () => {
      throw new ServerError(Status.UNIMPLEMENTED, "not here");
    };
    server.add(ContentDefinition, {
      // digest "chunks:<n>": n chunks; "fail-after:<n>": n chunks, then an error; "endless": until cancelled
      async *read({ digest }: { digest: string }, ctx: { signal: AbortSignal }) {
        const [kind, n] = digest.split(":");
        try {
          for (let i = 0; kind === "endless" || i < Number(n); i++) yield { offset: BigInt(i * mib), data: chunk(i % 256) };
          if (kind === "fail-after") throw new ServerError(Status.DATA_LOSS, "the rest is gone");
        } finally {
          if (ctx.signal.aborted) readCancelled();
        }
      },
      async *list() {
        yield { info: [] };
      },
      info: unimplemented,
      update: unimplemented,
      delete: unimplemented,
      status: unimplemented,
      listStatuses: unimplemented,
      async *write() {
        throw new ServerError(Status.UNIMPLEMENTED, "not here");
      },
      abort: unimplemented,
    } as never);
    await server.listen(`unix://${address}`);
  });

  after(async () => {
    for (const c of channels) c.close();
    closeChannels();
    await server.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a unary call returns the decoded response and carries the metadata", async () => {
    const version = await directClient(VersionDefinition, channel()).version({}, { metadata: { [namespaceHeader]: "team-a" } });
    assert.deepEqual(version, { version: "v9.9.9", revision: "ns=team-a" });
  });

  test("many calls at once on one connection, each gets its own answer", async () => {
    const client = directClient(NamespacesDefinition, channel());
    const names = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? "present" : `missing-${i}`));
    const results = await Promise.allSettled(names.map((name) => client.get({ name })));
    results.forEach((r, i) => {
      if (i % 2 === 0) assert.equal(r.status === "fulfilled" && r.value.namespace?.name, "present");
      else assert.match(r.status === "rejected" ? (r.reason as ClientError).details : "", new RegExp(`"missing-${i}"`));
    });
  });

  test("a response larger than the default window and frame size arrives whole", async () => {
    const { namespaces } = await directClient(NamespacesDefinition, channel()).list({ filter: "" });
    assert.equal(namespaces.length, 5);
    assert.deepEqual(namespaces[4]!.labels, bigLabels);
  });

  test("a status error becomes a ClientError with the code and the decoded message", async () => {
    const err = await clientError(directClient(NamespacesDefinition, channel()).get({ name: "nope" }), Status.NOT_FOUND);
    assert.equal(err.details, 'namespace "nope": not found — ünïcødé');
    assert.equal(err.path, "/containerd.services.namespaces.v1.Namespaces/Get");
  });

  test("a service the server does not have is UNIMPLEMENTED", async () => {
    await clientError(directClient(IntrospectionDefinition, channel()).server({}), Status.UNIMPLEMENTED);
  });

  test("a missing socket is UNAVAILABLE, naming the error", async () => {
    const c = new DirectChannel(join(dir, "absent.sock"));
    channels.push(c);
    const err = await clientError(directClient(VersionDefinition, c).version({}), Status.UNAVAILABLE);
    assert.match(err.details, /ENOENT/);
    // The channel stays failed: a second call fails the same way without a new connection.
    await clientError(directClient(VersionDefinition, c).version({}), Status.UNAVAILABLE);
  });

  test("aborting a call rejects it with the signal's reason and cancels it on the server", async () => {
    const serverSawCancel = new Promise<void>((resolve) => (cancelled = resolve));
    const abort = new AbortController();
    const call = directClient(NamespacesDefinition, channel()).get({ name: "slow" }, { signal: abort.signal });
    setImmediate(() => abort.abort());
    const err = await rejection(call);
    assert.equal((err as Error).name, "AbortError");
    await serverSawCancel;
  });

  test("a request too large for the direct client is refused before anything is sent", async () => {
    const c = channel();
    const err = await rejection(directClient(NamespacesDefinition, c).get({ name: "n".repeat(70_000) }));
    assert.ok(err instanceof DirectGrpcError);
    assert.match((err as Error).message, /too large/);
    // Nothing was sent: the channel is still usable.
    assert.equal((await directClient(NamespacesDefinition, c).get({ name: "present" })).namespace?.name, "present");
  });

  test("a closed channel fails its later calls", async () => {
    const c = channel();
    await directClient(VersionDefinition, c).version({});
    c.close();
    await clientError(directClient(VersionDefinition, c).version({}), Status.UNAVAILABLE);
  });

  test("a server stream larger than the stream window arrives whole and in order", { timeout: 60_000 }, async () => {
    const client = directClient(ContentDefinition, channel(), undefined) as unknown as { read: typeof readStream };
    let i = 0;
    for await (const message of client.read({ digest: "chunks:24", offset: 0n, size: 0n }, inNamespace("default"))) {
      assert.equal(message.offset, BigInt(i * mib));
      assert.ok(message.data.equals(chunk(i)), `chunk ${i}`);
      i++;
    }
    assert.equal(i, 24);
  });

  test("an error after some messages ends the stream with it, after those messages", async () => {
    const client = directClient(ContentDefinition, channel()) as unknown as { read: typeof readStream };
    let received = 0;
    const err = await rejection(
      (async () => {
        for await (const _ of client.read({ digest: "fail-after:3" })) received++;
      })(),
    );
    assert.equal(received, 3);
    assert.ok(err instanceof ClientError && err.code === Status.DATA_LOSS && err.details === "the rest is gone", String(err));
  });

  test("leaving a stream early cancels it on the server; the channel goes on", async () => {
    const serverSawCancel = new Promise<void>((resolve) => (readCancelled = resolve));
    const c = channel();
    const client = directClient(ContentDefinition, c) as unknown as { read: typeof readStream };
    for await (const message of client.read({ digest: "endless:0" })) {
      if (message.offset === BigInt(2 * mib)) break;
    }
    await serverSawCancel;
    assert.equal((await directClient(VersionDefinition, c).version({})).version, "v9.9.9");
  });

  test("what the direct client cannot send goes to the fallback", async () => {
    let fallbackUsed = 0;
    const fallback = async () => {
      fallbackUsed++;
      return grpcClient(NamespacesDefinition, address);
    };
    const client = directClient(NamespacesDefinition, channel(), fallback);
    const err = await clientError(client.get({ name: "n".repeat(70_000) }, { metadata: inNamespace("default").metadata! }), Status.NOT_FOUND);
    assert.match(err.details, /^namespace "n{70000}": not found/);
    assert.equal(fallbackUsed, 1);
    assert.equal((await client.get({ name: "present" })).namespace?.name, "present");
    assert.equal(fallbackUsed, 1);
  });
});

/** The shape nice-grpc gives Content/Read, which directClient provides at run time. */
declare function readStream(
  request: { digest: string; offset?: bigint; size?: bigint },
  options?: { metadata?: unknown; signal?: AbortSignal },
): AsyncIterable<{ offset: bigint; data: Buffer }>;
