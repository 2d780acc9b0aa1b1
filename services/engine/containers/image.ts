// The image a container runs: found in the engine's namespace by a Docker reference
// (busybox = docker.io/library/busybox:latest) or by image id, its config read, its
// layers unpacked, so a container's snapshot can sit on its top chain id.
import { chainId } from "../../../core/image/chain-id.ts";
import { isNotFound } from "../../../core/grpc-client.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { normalizeDockerRef, ReferenceError } from "../../../core/image/reference.ts";
import { unpackImage } from "../../../core/image/unpack.ts";
import type { Backend } from "../backend.ts";
import { badRequest, notFoundError } from "../http.ts";
import { defaultRegistryName } from "../images/default-registry.ts";
import { imageCatalog, toDescriptor, type ImageCatalog, type ImageContent } from "../images/catalog.ts";

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

export const snapshotter = "overlayfs";

const idPattern = /^(?:sha256:)?([0-9a-f]{6,64})$/;

async function byName(backend: Backend, catalog: ImageCatalog, name: string): Promise<{ name: string; content: ImageContent } | undefined> {
  try {
    const { image } = await backend.images.images.get({ name }, backend.call());
    return { name, content: await catalog.content(toDescriptor(image!)) };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** The image `ref` names, with its config; 404 `No such image` as Docker words it, 400 for a malformed reference. */
export async function findImage(backend: Backend, ref: string): Promise<RunImage> {
  if (!ref) throw badRequest("invalid reference format: the image name is empty");
  let normalized: string | undefined;
  try {
    normalized = normalizeDockerRef(ref);
  } catch (err) {
    if (!(err instanceof ReferenceError)) throw err;
    if (!idPattern.test(ref)) throw badRequest(err.message.replace(/: "[^"]*"$/, ""));
  }
  // The image catalog (images/catalog.ts) finds images for the image routes too, and
  // caches what each target resolves to: one lookup and one cache for the engine.
  const catalog = imageCatalog(backend);
  let found: { name: string; content: ImageContent } | undefined;
  if (normalized) found = await byName(backend, catalog, normalized);
  // A Docker Hub name a pull from the daemon's default registry stored under that registry's name (images/default-registry.ts).
  const fromDefault = normalized && !found ? defaultRegistryName(normalized, backend.options.registry?.defaultRegistry) : undefined;
  if (fromDefault) found = await byName(backend, catalog, fromDefault);
  if (!found && idPattern.test(ref)) {
    const image = await catalog.lookup(ref);
    if (image) found = { name: image.names[0]!, content: image };
  }
  if (!found) throw notFoundError(`No such image: ${normalized ?? ref}`);
  const { content } = found;
  return { name: found.name, target: content.target, id: content.id, config: (content.config.config ?? {}) as ImageRunDefaults, chainId: chainId(content.diffIds) };
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
