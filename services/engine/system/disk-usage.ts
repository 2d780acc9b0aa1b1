// GET /system/df: what `docker system df [-v]` shows. Layers are counted once however
// many images share them; a container's writable layer is its snapshot's usage.
import { chainIds } from "../../../core/image/chain-id.ts";
import type { Backend } from "../backend.ts";
import { buildCacheUsage } from "../build/cache.ts";
import { isBuildIntermediate } from "../build/image-store.ts";
import { imageCatalog } from "../images/catalog.ts";
import { listElement } from "../images/views.ts";
import type { ContainerRecord } from "../store.ts";
import { volumeStore } from "../volumes/index.ts";
import { volumesDiskUsage } from "../volumes/usage.ts";

async function writableLayerSize(backend: Backend, container: ContainerRecord): Promise<number> {
  try {
    const { container: c } = await backend.containers.get({ id: container.Id }, backend.call());
    if (!c?.snapshotKey) return 0;
    const usage = await backend.images.snapshots.usage({ snapshotter: c.snapshotter || "overlayfs", key: c.snapshotKey }, backend.call());
    return Number(usage.size);
  } catch {
    // No containerd container (yet, or any more): nothing written.
    return 0;
  }
}

/** Docker's one-line status for a container record (`docker system df -v` shows it). */
function statusText(c: ContainerRecord): string {
  if (c.State.Running) return c.State.Paused ? "Up (Paused)" : "Up";
  if (c.State.Status === "created") return "Created";
  return `Exited (${c.State.ExitCode})`;
}

export async function diskUsage(backend: Backend, apiVersion?: string): Promise<Record<string, unknown>> {
  const catalog = imageCatalog(backend);
  // The build's step images are the build cache, reported under BuildCache (Docker's df lists top-level images only).
  const images = (await catalog.list()).filter((image) => !isBuildIntermediate(image));
  const containers = backend.store.list();

  // Each layer (by chain ID) once; a layer in two or more images is shared.
  const layerSizes = new Map<string, number>();
  const layerUsers = new Map<string, number>();
  const chainsOf = new Map<string, string[]>();
  for (const image of images) {
    const chains = chainIds(image.diffIds);
    chainsOf.set(image.id, chains);
    let previous = 0;
    for (let i = 0; i < chains.length; i++) {
      const total = await catalog.size({ ...image, diffIds: image.diffIds.slice(0, i + 1) });
      layerSizes.set(chains[i]!, total - previous);
      previous = total;
      layerUsers.set(chains[i]!, (layerUsers.get(chains[i]!) ?? 0) + 1);
    }
  }
  const layersSize = [...layerSizes.values()].reduce((a, b) => a + b, 0);

  const imageRows = [];
  for (const image of images) {
    const row = await listElement(catalog, image, containers.filter((c) => c.Image === image.id).length);
    const shared = (chainsOf.get(image.id) ?? []).filter((chain) => (layerUsers.get(chain) ?? 0) > 1).reduce((sum, chain) => sum + (layerSizes.get(chain) ?? 0), 0);
    imageRows.push({ ...row, SharedSize: shared });
  }

  const containerRows = [];
  for (const c of containers) {
    const image = images.find((i) => i.id === c.Image);
    containerRows.push({
      Id: c.Id,
      Names: [c.Name],
      Image: c.Config.Image ?? c.Image,
      ImageID: c.Image,
      Command: [c.Path, ...c.Args].join(" "),
      Created: Math.floor(Date.parse(c.Created) / 1000),
      Ports: [],
      SizeRw: await writableLayerSize(backend, c),
      SizeRootFs: image ? await catalog.size(image) : 0,
      Labels: c.Config.Labels ?? {},
      State: c.State.Status,
      Status: statusText(c),
      HostConfig: { NetworkMode: c.HostConfig.NetworkMode ?? "default" },
      NetworkSettings: { Networks: {} },
      Mounts: [],
    });
  }
  return { LayersSize: layersSize, Images: imageRows, Containers: containerRows, Volumes: volumesDiskUsage(backend.store, volumeStore(backend)), ...(await buildCacheUsage(backend, apiVersion)) };
}
