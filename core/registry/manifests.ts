// Manifests and indexes on the wire: fetched with an Accept header for all four
// types, capped at 4 MiB (read as a stream, so a lying Content-Length cannot make us
// buffer more), checked against the digest that named them; pushed with their own
// media type as Content-Type.
import { BerthError, failedPrecondition, invalidArgument } from "../errors.ts";
import { sha256Digest } from "../digest.ts";
import { isIndexType, isManifestType, mediaTypes } from "../image/media-types.ts";
import type { Descriptor } from "../image/manifest.ts";
import { documentLimits } from "../image/resolve.ts";
import { headerValue, pullScope, pushScope, type RegistryClient, type RegistryResponse } from "./client.ts";
import { discardBody } from "./errors.ts";
import type { Endpoint } from "./hosts.ts";
import type { RegistryReference } from "./reference.ts";

/** The registries' own cap on manifests and indexes (the content store's too). */
export const maxManifestBytes = documentLimits.manifest;

export const manifestAccept = [mediaTypes.ociIndex, mediaTypes.ociManifest, mediaTypes.dockerManifestList, mediaTypes.dockerManifest].join(", ");

export interface FetchedDocument {
  descriptor: Descriptor;
  data: Buffer;
  /** The endpoint that served it (a mirror or the registry). */
  endpoint: Endpoint;
}

/**
 * Runs `fn` against each pull endpoint in turn (mirrors first): a mirror that fails in
 * any way hands over to the next; the registry's own failure is the one reported.
 */
export async function onPullEndpoints<T>(client: RegistryClient, registry: string, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
  const endpoints = client.endpoints(registry, "pull");
  for (const [i, ep] of endpoints.entries()) {
    try {
      return await fn(ep);
    } catch (err) {
      if (!ep.mirror || i === endpoints.length - 1) throw err;
    }
  }
  throw new Error("unreachable: no endpoints");
}

function mediaTypeOf(contentType: string | undefined, data: Buffer, what: string): string {
  const declared = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (isManifestType(declared) || isIndexType(declared)) return declared;
  // Registries may answer application/json; the document itself then says what it is.
  let doc: { mediaType?: unknown; manifests?: unknown; config?: unknown; fsLayers?: unknown };
  try {
    doc = JSON.parse(data.toString("utf8"));
  } catch {
    throw invalidArgument(`${what}: not a JSON document (Content-Type ${JSON.stringify(contentType ?? "")})`);
  }
  if (typeof doc.mediaType === "string" && (isManifestType(doc.mediaType) || isIndexType(doc.mediaType))) return doc.mediaType;
  if (doc.fsLayers !== undefined) throw invalidArgument(`${what}: schema 1 manifests are not supported`);
  if (Array.isArray(doc.manifests)) return mediaTypes.ociIndex;
  if (doc.config !== undefined) return mediaTypes.ociManifest;
  throw invalidArgument(`${what}: unsupported manifest media type ${JSON.stringify(declared || doc.mediaType)}`);
}

async function readLimited(body: RegistryResponse["body"], limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      total += chunk.length;
      if (total > limit) throw invalidArgument(`${what}: manifest is larger than the ${limit / 1024 / 1024} MiB limit`);
      parts.push(Buffer.from(chunk));
    }
  } finally {
    discardBody(body);
  }
  return Buffer.concat(parts);
}

/**
 * GET /v2/<repo>/manifests/<tag or digest>. With a digest (in `object` or in
 * `expected`) the bytes must hash to it; with `expected` the size must match too.
 */
export async function fetchManifest(client: RegistryClient, ref: RegistryReference, object: string, expected?: Descriptor): Promise<FetchedDocument> {
  return onPullEndpoints(client, ref.registry, async (endpoint) => {
    const path = `/v2/${ref.repository}/manifests/${object}`;
    const res = await client.send(endpoint, ref.registry, { method: "GET", path, headers: { accept: manifestAccept }, scopes: [pullScope(ref.repository)] });
    const what = `manifest ${ref.registry}/${ref.repository}:${object} (${res.url})`;
    const length = Number(headerValue(res, "content-length") ?? "NaN");
    if (length > maxManifestBytes) {
      discardBody(res.body);
      throw invalidArgument(`${what}: manifest of ${length} bytes is larger than the ${maxManifestBytes / 1024 / 1024} MiB limit`);
    }
    const data = await readLimited(res.body, maxManifestBytes, what);
    const digest = sha256Digest(data);
    const wanted = expected?.digest ?? (object.startsWith("sha256:") ? object : undefined);
    if (wanted && digest !== wanted) throw failedPrecondition(`${what}: digest mismatch: the registry sent content with digest ${digest}`);
    const claimed = headerValue(res, "docker-content-digest");
    if (!wanted && claimed && claimed.startsWith("sha256:") && claimed !== digest) {
      throw failedPrecondition(`${what}: digest mismatch: Docker-Content-Digest says ${claimed}, the content hashes to ${digest}`);
    }
    if (expected && expected.size !== data.length) throw failedPrecondition(`${what}: size mismatch: expected ${expected.size} bytes, got ${data.length}`);
    const mediaType = mediaTypeOf(headerValue(res, "content-type"), data, what);
    const descriptor: Descriptor = { ...(expected ?? {}), mediaType: expected?.mediaType || mediaType, digest, size: data.length };
    return { descriptor, data, endpoint };
  });
}

/** PUT /v2/<repo>/manifests/<tag or digest> with the document's media type. */
export async function pushManifest(client: RegistryClient, ref: RegistryReference, object: string, descriptor: Descriptor, data: Buffer): Promise<void> {
  if (data.length > maxManifestBytes) throw invalidArgument(`manifest ${descriptor.digest}: ${data.length} bytes is larger than the ${maxManifestBytes / 1024 / 1024} MiB limit`);
  if (sha256Digest(data) !== descriptor.digest) throw invalidArgument(`manifest ${descriptor.digest}: the bytes given hash to ${sha256Digest(data)}`);
  const [endpoint] = client.endpoints(ref.registry, "push");
  const path = `/v2/${ref.repository}/manifests/${object}`;
  const res = await client.send(endpoint!, ref.registry, {
    method: "PUT",
    path,
    headers: { "content-type": descriptor.mediaType, "content-length": String(data.length) },
    body: data,
    scopes: [pushScope(ref.repository)],
  });
  discardBody(res.body);
  const stored = headerValue(res, "docker-content-digest");
  if (stored && stored !== descriptor.digest) {
    throw new BerthError("failed precondition", `PUT ${res.url}: the registry stored the manifest as ${stored}, not ${descriptor.digest}`);
  }
}
