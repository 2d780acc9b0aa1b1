// berth.internal.v1.BlobFetcher: a registry blob downloaded by the content process
// itself, straight into its ingest. The pull jobs used to receive each blob over HTTP
// and stream it here through Content/Write: every byte crossed a process boundary and
// was copied 3-4 times in each process, and both processes spent much of a pull in
// garbage collections of those copies. Here undici's chunks go to the ingest file as
// they come (hashed on the way), and the jobs process only orchestrates.
//
// The write itself is the Write protocol's own session (write.ts), driven from here:
// leases, a blob the shared store already holds, a stale ingest to resume, size and
// digest checked at commit are all the same code as ctr's writes. The body goes to the
// file a reused 1 MiB buffer at a time, one writev each. A transient failure (5xx, a dropped connection) and a cancelled call keep
// the ingest for the next attempt, which asks the registry with Range for the rest;
// any other failure aborts it, so nothing half-written stays.
import type { CallContext } from "nice-grpc-common";
import { parseDigest } from "../../core/digest.ts";
import { BerthError, invalidArgument, messageWithoutKind } from "../../core/errors.ts";
import type { FetchBlobProgress, FetchBlobRequest } from "../../core/gen/berth/internal/v1/fetch.ts";
import { WriteAction, type WriteContentRequest } from "../../core/gen/containerd/services/content/v1/content.ts";
import { leaseOf, namespaceOf } from "../../core/grpc-server.ts";
import type { Descriptor } from "../../core/image/manifest.ts";
import { registryClient, type RegistryAccess } from "../../core/registry/access.ts";
import { blobStream, readBlobInto } from "../../core/registry/blobs.ts";
import { parseRegistryReference } from "../../core/registry/reference.ts";
import { isRetryable } from "../../core/registry/retry.ts";
import { withWarmUpRegistry } from "../../core/registry/warm-up.ts";
import { sha256Create, sha256Update } from "../../native/index.ts";
import { openWriteSession, type WriteDeps, type WriteSession } from "./write.ts";

/** How often progress goes back to the caller while bytes arrive. */
const progressEveryMs = 100;

function accessOf(request: FetchBlobRequest): RegistryAccess {
  const creds = request.registry?.credentials;
  return {
    plainHttp: request.registry?.plainHttp ?? false,
    insecure: request.registry?.insecure ?? false,
    ...(creds && creds.username !== "" ? { credentials: { username: creds.username, password: creds.password } } : {}),
  };
}

function descriptorOf(request: FetchBlobRequest): Descriptor {
  const digest = parseDigest(request.digest);
  if (request.size < 0n || request.size > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument(`blob ${digest}: size ${request.size} is out of range`);
  return { mediaType: request.mediaType, digest, size: Number(request.size) };
}

const empty = Buffer.alloc(0);

/** A request of the Write protocol, for the in-process session. */
function request_(action: WriteAction, ref: string): WriteContentRequest {
  return { action, ref, offset: 0n, total: 0n, expected: "", labels: {}, data: empty };
}

export async function* fetchBlob(deps: WriteDeps, request: FetchBlobRequest, ctx: CallContext): AsyncGenerator<Partial<FetchBlobProgress>> {
  const namespace = namespaceOf(ctx);
  const desc = descriptorOf(request);
  if (request.ingestRef === "") throw invalidArgument(`blob ${desc.digest}: ingest_ref is empty`);
  const ref = parseRegistryReference(request.ref);
  const ingest = request.ingestRef;
  const total = BigInt(desc.size);
  const what = `blob ${desc.digest} from ${ref.registry}/${ref.repository}`;
  // One try per request: the job retries the whole fetch with backoff, resuming.
  const client = registryClient(accessOf(request), ref.registry, { attempts: 1 }, ctx.signal);
  let session: WriteSession | undefined;
  try {
    try {
      session = await openWriteSession(deps, namespace, leaseOf(ctx), ingest, desc.size, desc.digest);
    } catch (err) {
      if (err instanceof BerthError && err.kind === "already exists") {
        yield { done: total, total, committed: true, existed: true };
        return;
      }
      throw err;
    }
    const status = (await session.step(request_(WriteAction.STAT, ingest))).reply;
    let offset = Number(status.offset ?? 0n);
    // offset === size: the shared store holds the bytes (another namespace's blob), or
    // an earlier attempt received them all; the commit alone is left.
    if (offset < desc.size) {
      const open = session;
      // The body comes off the socket in views of reused buffers (direct-get.ts), each
      // run appended with one writev before the buffer takes more reads.
      const reading = readBlobInto(
        client,
        ref,
        desc,
        async (chunks) => {
          await open.append(chunks);
          for (const c of chunks) offset += c.length;
        },
        { start: offset, verifyDigest: false, direct: true },
      );
      let settled = false;
      const done = reading.then(
        () => void (settled = true),
        () => void (settled = true),
      );
      try {
        let reported = offset;
        while (!settled) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, progressEveryMs)))]);
          clearTimeout(timer);
          if (!settled && offset !== reported) {
            reported = offset;
            yield { done: BigInt(offset), total };
          }
        }
      } finally {
        // A caller gone mid-download (the generator closed at its yield): the client's
        // signal stops the reading; the session is not closed under its last append.
        await done;
      }
      await reading;
    }
    try {
      await session.step({ ...request_(WriteAction.COMMIT, ingest), offset: BigInt(offset), total, expected: desc.digest, labels: request.labels });
    } catch (err) {
      // The session's own check of the whole blob (size, digest: after a resumed download).
      if (err instanceof BerthError && err.kind === "failed precondition") throw new BerthError(err.kind, `${what}: ${messageWithoutKind(err)}; nothing was committed`);
      throw err;
    }
    yield { done: total, total, committed: true, existed: false };
  } catch (err) {
    const held = session;
    session = undefined;
    await held?.close();
    // Kept for the next attempt: what was received is good as far as it goes.
    if (ctx.signal.aborted || isRetryable(err) || (err instanceof BerthError && err.kind === "canceled")) throw err;
    // A ref another writer holds (UNAVAILABLE, above) is not ours to abort; any other
    // failure leaves nothing half-written, an ingest that could not be opened again
    // (its recorded size is not this blob's) included.
    await deps.ingests.remove(namespace, ingest);
    throw err;
  } finally {
    await session?.close();
    await client.close();
  }
}

/** A download's code run once, from a loopback registry into a hash (core/registry/warm-up.ts). */
export async function warmUpFetch(): Promise<void> {
  await withWarmUpRegistry(async ({ client, ref, layer }) => {
    const hash = sha256Create();
    for await (const chunk of blobStream(client, ref, layer, { verifyDigest: false })) await sha256Update(hash, [chunk]);
  });
}
