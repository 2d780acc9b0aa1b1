// The diff service's side of its conversations with the content service: a layer blob
// fetched into a local spool file, verified against its descriptor before anything
// uses it; content-service failures as our own errors; refs for new blobs.
import { createHash, randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { ClientError, Status, type CallOptions } from "nice-grpc";
import { BerthError, failedPrecondition, kindOfGrpcStatus, notFound } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import { blobInfo, readBlob } from "../../core/content-client.ts";
import type { ContentClient } from "../../core/gen/containerd/services/content/v1/content.ts";

/** A content-service failure as our own error kind, so its status code passes through. */
export function fromContentError(err: unknown, what: string): unknown {
  if (!(err instanceof ClientError)) return err;
  if (err.code === Status.NOT_FOUND) return notFound(what);
  return new BerthError(kindOfGrpcStatus(err.code), `${what}: ${err.details}`);
}

export interface BlobRef {
  digest: string;
  /** Expected size; 0 or less = not stated. */
  size: number;
}

/**
 * Copies blob `ref.digest` into `file`, hashing on the way; fails (failed precondition)
 * unless the bytes hash to the digest and match the stated size.
 */
export async function spoolBlob(client: ContentClient, ref: BlobRef, file: string, options: CallOptions): Promise<number> {
  const digest = parseDigest(ref.digest);
  const what = `content digest ${digest}`;
  const info = await blobInfo(client, digest, options).catch((err) => {
    throw fromContentError(err, what);
  });
  if (!info) throw notFound(what);
  const stored = Number(info.size);
  if (ref.size > 0 && ref.size !== stored) {
    throw failedPrecondition(`layer ${digest}: descriptor size ${ref.size} does not match the stored size ${stored}`);
  }
  const hash = createHash("sha256");
  let received = 0;
  const handle = await open(file, "wx", 0o600);
  try {
    for await (const data of readBlob(client, digest, options)) {
      hash.update(data);
      received += data.length;
      await handle.write(data);
    }
  } catch (err) {
    throw fromContentError(err, what);
  } finally {
    await handle.close();
  }
  const actual = `sha256:${hash.digest("hex")}`;
  if (received !== stored) throw failedPrecondition(`layer ${digest}: read ${received} bytes, the store records ${stored}`);
  if (actual !== digest) throw failedPrecondition(`layer ${digest}: content digest mismatch: the stored bytes hash to ${actual}`);
  return received;
}

/** containerd's uniqueRef(): "<unix nanos>-<base64url of 9 random bytes>". */
export function uniqueRef(): string {
  const nanos = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
  return `${nanos}-${randomBytes(9).toString("base64url")}`;
}
