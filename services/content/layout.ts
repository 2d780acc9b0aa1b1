// Where the content store keeps committed blobs: one file per digest, shared by every
// namespace (which namespace holds which is in the database). The diff process reads
// layers from here directly, after the content service's Info said the caller's
// namespace holds the blob.
import { createHash } from "node:crypto";
import { join } from "node:path";

/** <root>/content: the content service's own part of berthd's root. */
export function contentRootOf(root: string): string {
  return join(root, "content");
}

export function sharedBlobDir(contentRoot: string): string {
  return join(contentRoot, "blobs", "sha256");
}

/**
 * An ingest's directory: refs are arbitrary strings, so never file names themselves.
 * The diff process reads a download's `data` here while it grows (services/diff/ingest-apply.ts).
 */
export function ingestDirOf(contentRoot: string, namespace: string, ref: string): string {
  return join(contentRoot, "ingest", createHash("sha256").update(`${namespace}\0${ref}`).digest("hex"));
}
