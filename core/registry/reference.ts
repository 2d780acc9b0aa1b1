// Where an image lives: which registry, which repository, and the object (tag or
// digest) to fetch. Short names go to the default registry, Docker Hub style.
import { isDigest } from "../digest.ts";
import { invalidArgument } from "../errors.ts";
import { parseNormalizedNamed, ReferenceError } from "../image/reference.ts";

export const dockerHub = "docker.io";

export interface RegistryReference {
  /** host[:port] as written in the reference ("docker.io" for Docker Hub). */
  registry: string;
  /** The repository path, e.g. "library/busybox". */
  repository: string;
  tag?: string;
  digest?: string;
}

/** True when the reference names its registry (a first component with "." or ":", or localhost). */
export function namesRegistry(ref: string): boolean {
  const slash = ref.indexOf("/");
  if (slash === -1) return false;
  const first = ref.slice(0, slash);
  return /[.:]/.test(first) || first === "localhost";
}

/**
 * `busybox` → docker.io/library/busybox:latest; `host:5000/a/b:t`; `name@sha256:…`.
 * With another default registry, short names go there, without Docker Hub's library/.
 */
export function parseRegistryReference(ref: string, defaultRegistry = dockerHub): RegistryReference {
  let parsed;
  try {
    parsed = parseNormalizedNamed(ref);
  } catch (err) {
    if (err instanceof ReferenceError) throw invalidArgument(err.message);
    throw err;
  }
  if (parsed.digest && !isDigest(parsed.digest)) throw invalidArgument(`reference "${ref}": unsupported digest ${parsed.digest} (expected sha256:<64 hex>)`);
  const slash = parsed.name.indexOf("/");
  let registry = parsed.name.slice(0, slash);
  let repository = parsed.name.slice(slash + 1);
  if (!namesRegistry(ref) && defaultRegistry !== dockerHub) {
    registry = defaultRegistry;
    if (!ref.includes("/") && repository.startsWith("library/")) repository = repository.slice("library/".length);
  }
  return {
    registry,
    repository,
    ...(parsed.tag || !parsed.digest ? { tag: parsed.tag ?? "latest" } : {}),
    ...(parsed.digest ? { digest: parsed.digest } : {}),
  };
}

/** The full name an image record gets: registry/repository[:tag][@digest]. */
export function referenceString(ref: RegistryReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** What to ask the registry for: the digest when there is one (it pins the content), else the tag. */
export function objectOf(ref: RegistryReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}
