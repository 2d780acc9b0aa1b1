// Image references the way Docker's engine reads and shows them: `busybox` is
// docker.io/library/busybox:latest in the image store, and shown back as
// `busybox:latest`; an invalid one is a 400 with Docker's wording (tools match on
// "invalid reference format"). Built on core/image/reference.ts, which has the grammar.
import { parseNormalizedNamed, ReferenceError, type DockerReference } from "../../core/image/reference.ts";
import { badRequest } from "./http.ts";

export type { DockerReference };

const uppercaseMessage = "invalid reference format: repository name must be lowercase";
const formatMessage = "invalid reference format";

/** A reference in the image store's form; `name` is domain/path (docker.io/library/busybox). */
export function parseImageRef(ref: string): DockerReference {
  if (ref === "") throw badRequest(formatMessage);
  try {
    return parseNormalizedNamed(ref);
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    // core's messages quote the reference; Docker's are fixed strings clients grep for.
    if (err.message.includes("must be lowercase")) throw badRequest(uppercaseMessage);
    if (err.message.startsWith("invalid reference format")) throw badRequest(formatMessage);
    throw badRequest(err.message);
  }
}

/** The store's name for a reference: no tag means :latest; with a digest the tag is dropped (Docker pulls by digest then). */
export function normalizeImageRef(ref: string): string {
  const r = parseImageRef(ref);
  if (r.digest) return `${r.name}@${r.digest}`;
  return `${r.name}:${r.tag ?? "latest"}`;
}

/** A repository name (no tag, no digest) in the store's form: `busybox` → docker.io/library/busybox. */
export function normalizeRepository(repo: string): string {
  const r = parseImageRef(repo);
  if (r.tag || r.digest) throw badRequest(`${formatMessage}: repository name "${repo}" must not carry a tag or digest`);
  return r.name;
}

/** Docker's tag grammar (what `docker tag x repo:TAG` accepts). */
const tagPattern = /^[\w][\w.-]{0,127}$/;

/**
 * `repo` plus a separate `tag` (the form /images/create and /images/{name}/tag take):
 * the tag may also sit in `repo` itself; a tag that looks like a digest pins it.
 */
export function joinRepoTag(repo: string, tag: string | null | undefined): string {
  const r = parseImageRef(repo);
  if (!tag) return r.digest ? `${r.name}@${r.digest}` : `${r.name}:${r.tag ?? "latest"}`;
  if (r.tag || r.digest) throw badRequest(`${formatMessage}: "${repo}" already names a tag or digest`);
  if (/^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/.test(tag)) return `${r.name}@${tag}`;
  if (!tagPattern.test(tag)) throw badRequest(`invalid tag format`);
  return `${r.name}:${tag}`;
}

/** The short form Docker shows: docker.io/library/busybox → busybox, docker.io/x/y → x/y, others as they are. */
export function familiarName(name: string): string {
  if (!name.startsWith("docker.io/")) return name;
  const rest = name.slice("docker.io/".length);
  if (rest.startsWith("library/") && !rest.slice("library/".length).includes("/")) return rest.slice("library/".length);
  return rest;
}

/** A store name shown the Docker way: docker.io/library/busybox:latest → busybox:latest; repo@digest likewise. */
export function familiarRef(storeName: string): string {
  const split = splitStoreName(storeName);
  if (!split) return storeName;
  return `${familiarName(split.repository)}${split.digest ? `@${split.digest}` : `:${split.tag}`}`;
}

export interface StoreName {
  repository: string;
  tag?: string;
  digest?: string;
}

/** A store name's parts, or undefined for a name that is not a Docker reference (another tool's image). */
export function splitStoreName(storeName: string): StoreName | undefined {
  let r: DockerReference;
  try {
    r = parseNormalizedNamed(storeName);
  } catch {
    return undefined;
  }
  // Only names already in the store's full form count; `busybox:latest` in the store is some other tool's.
  if (!storeName.startsWith(`${r.name}:`) && !storeName.startsWith(`${r.name}@`)) return undefined;
  if (r.digest) return { repository: r.name, digest: r.digest };
  if (r.tag) return { repository: r.name, tag: r.tag };
  return undefined;
}

/** `sha256:<64 hex>` (an image ID as Docker prints it in full). */
export const fullImageIdPattern = /^sha256:[a-f0-9]{64}$/;

/**
 * Whether `ref` could be (a prefix of) an image ID: `sha256:…`, or bare lowercase hex
 * that a name lookup did not find. Docker accepts any unique prefix.
 */
export function imageIdPrefix(ref: string): string | undefined {
  const m = /^(?:sha256:)?([a-f0-9]{1,64})$/.exec(ref);
  return m ? `sha256:${m[1]}` : undefined;
}

/** The 12-hex short form Docker prints (IDs without `sha256:`). */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, "").slice(0, 12);
}

/** The registry host of a store name (docker.io for Docker Hub). */
export function registryHost(repository: string): string {
  return repository.slice(0, repository.indexOf("/"));
}
