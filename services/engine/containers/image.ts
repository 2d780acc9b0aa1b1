// The image a container runs: found in the engine's namespace by a Docker reference
// (busybox = docker.io/library/busybox:latest) or by image id, its config read, its
// layers unpacked, so a container's snapshot can sit on its top chain id.
import { readBlobBytes } from "../../../core/content-client.ts";
import { chainId } from "../../../core/image/chain-id.ts";
import { isNotFound } from "../../../core/grpc-client.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { defaultPlatformMatcher } from "../../../core/image/platform.ts";
import { normalizeDockerRef, ReferenceError } from "../../../core/image/reference.ts";
import { resolveImage } from "../../../core/image/resolve.ts";
import { callOptions } from "../../../core/image/services.ts";
import { unpackImage } from "../../../core/image/unpack.ts";
import type { Backend } from "../backend.ts";
import { badRequest, notFoundError } from "../http.ts";

/** The runtime part of an image config (what `docker inspect` of an image shows under Config). */
export interface ImageRunDefaults {
  Env?: string[] | null;
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  ExposedPorts?: Record<string, object> | null;
  Volumes?: Record<string, object> | null;
}

export interface RunImage {
  /** The stored image name (normalized reference). */
  name: string;
  target: Descriptor;
  /** The image id: its config's digest. */
  id: string;
  config: ImageRunDefaults;
  /** The top chain id of its layers (the snapshot a container's rootfs sits on). */
  chainId: string;
}

interface ResolvedTarget {
  id: string;
  config: ImageRunDefaults;
  chainId: string;
}

/** What a target digest resolves to never changes (content is addressed by digest): resolved once per engine. */
const resolvedTargets = new Map<string, ResolvedTarget>();
const maxResolvedTargets = 256;

/** Image ids by target digest (fixed by content), so a lookup by id does not read every manifest again (builds make many images). */
const imageIdOfTarget = new Map<string, string>();
const maxImageIds = 4096;

export const snapshotter = "overlayfs";

const idPattern = /^(?:sha256:)?([0-9a-f]{6,64})$/;

function descriptorOf(t: { mediaType: string; digest: string; size: bigint; annotations: Record<string, string> }): Descriptor {
  return { mediaType: t.mediaType, digest: t.digest, size: Number(t.size), annotations: t.annotations };
}

async function byName(backend: Backend, name: string): Promise<{ name: string; target: Descriptor } | undefined> {
  try {
    const { image } = await backend.images.images.get({ name }, backend.call());
    return { name, target: descriptorOf(image!.target!) };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function byId(backend: Backend, hex: string): Promise<{ name: string; target: Descriptor; id: string } | undefined> {
  const { images } = await backend.images.images.list({ filters: [] }, backend.call());
  for (const image of images) {
    if (!image.target) continue;
    try {
      let id = imageIdOfTarget.get(image.target.digest);
      if (!id) {
        id = (await resolveImage(backend.images, descriptorOf(image.target), defaultPlatformMatcher())).configDescriptor.digest;
        if (imageIdOfTarget.size >= maxImageIds) imageIdOfTarget.delete(imageIdOfTarget.keys().next().value!);
        imageIdOfTarget.set(image.target.digest, id);
      }
      if (id.slice("sha256:".length).startsWith(hex)) {
        return { name: image.name, target: descriptorOf(image.target), id };
      }
    } catch {
      // an image that does not serve this platform is not the one asked for
    }
  }
  return undefined;
}

/** The image `ref` names, with its config; 404 `No such image` as Docker words it, 400 for a malformed reference. */
export async function findImage(backend: Backend, ref: string): Promise<RunImage> {
  if (!ref) throw badRequest("invalid reference format: the image name is empty");
  let found: { name: string; target: Descriptor } | undefined;
  let normalized: string | undefined;
  try {
    normalized = normalizeDockerRef(ref);
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    if (!idPattern.test(ref)) throw badRequest(err.message.replace(/: "[^"]*"$/, ""));
  }
  if (normalized) found = await byName(backend, normalized);
  const id = idPattern.exec(ref);
  if (!found && id) found = await byId(backend, id[1]!);
  if (!found) throw notFoundError(`No such image: ${normalized ?? ref}`);
  let resolved = resolvedTargets.get(found.target.digest);
  if (!resolved) {
    const image = await resolveImage(backend.images, found.target, defaultPlatformMatcher());
    const raw = await readBlobBytes(backend.images.content, image.configDescriptor.digest, callOptions(backend.images), { limit: 8 << 20 });
    const config = ((JSON.parse(raw.toString("utf8")) as { config?: ImageRunDefaults }).config ?? {}) as ImageRunDefaults;
    resolved = { id: image.configDescriptor.digest, config, chainId: chainId(image.config.diffIds) };
    if (resolvedTargets.size >= maxResolvedTargets) resolvedTargets.delete(resolvedTargets.keys().next().value!);
    resolvedTargets.set(found.target.digest, resolved);
  }
  return { name: found.name, target: found.target, ...resolved };
}

/** The image's top chain id, unpacking it first (under `lease`) unless its snapshot is there already. */
export async function unpackedChainId(backend: Backend, image: RunImage, lease: string): Promise<string> {
  try {
    await backend.images.snapshots.stat({ snapshotter, key: image.chainId }, backend.call(lease));
    return image.chainId;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return (await unpackImage(backend.images, image.target, { snapshotter, lease })).chainId;
}
