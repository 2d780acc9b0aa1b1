// Docker Hub names when the daemon's registry settings name another defaultRegistry. The
// docker CLI sends every short name to /images/create already expanded (`busybox` as
// fromImage=docker.io/library/busybox), so the Engine API cannot tell `busybox` from an
// explicit docker.io/library/busybox: with a defaultRegistry, both mean that registry's
// busybox. The image is stored under that registry's name (as a build's FROM and
// `berthctl pull` store it), so the store never claims Docker Hub for an image that came
// from elsewhere, and a push of it goes back where it came from.
import { dockerHub } from "../../../core/registry/reference.ts";
import { familiarRef, fullImageIdPattern, normalizeImageRef } from "../references.ts";

/**
 * The store name `ref` (busybox, foo/bar:1, docker.io/library/busybox@sha256:…) has on the
 * default registry: docker.io/library/busybox:latest → <registry>/busybox:latest. Undefined
 * when it names another registry, is an image ID or not a reference, or there is no default.
 */
export function defaultRegistryName(ref: string, defaultRegistry: string | undefined): string | undefined {
  if (!defaultRegistry || defaultRegistry === dockerHub) return undefined;
  if (fullImageIdPattern.test(ref) || /^[0-9a-f]{64}$/.test(ref)) return undefined;
  let storeName: string;
  try {
    storeName = normalizeImageRef(ref);
  } catch {
    return undefined;
  }
  if (!storeName.startsWith(`${dockerHub}/`)) return undefined;
  return `${defaultRegistry}/${familiarRef(storeName)}`;
}
