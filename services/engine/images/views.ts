// The JSON shapes Docker clients read for images: the list element (`docker images`),
// inspect (`docker image inspect`, compose and testcontainers read Config/RepoTags/Id)
// and history rows. Times: Unix seconds in lists, RFC 3339 in inspect.
import { chainIds } from "../../../core/image/chain-id.ts";
import type { EngineImage, ImageCatalog } from "./catalog.ts";

const zeroTime = "0001-01-01T00:00:00Z";

/** Unix seconds of an RFC 3339 time (0 when absent or unreadable). */
export function unixSeconds(rfc3339: string | undefined): number {
  if (!rfc3339) return 0;
  const ms = Date.parse(rfc3339);
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

export function imageLabels(image: EngineImage): Record<string, string> | null {
  const labels = image.config.config?.Labels as Record<string, string> | null | undefined;
  return labels && Object.keys(labels).length > 0 ? labels : null;
}

export interface ListElement {
  Containers: number;
  Created: number;
  Id: string;
  Labels: Record<string, string> | null;
  ParentId: string;
  RepoDigests: string[];
  RepoTags: string[];
  SharedSize: number;
  Size: number;
  VirtualSize: number;
}

export async function listElement(catalog: ImageCatalog, image: EngineImage, containers = -1): Promise<ListElement> {
  const size = await catalog.size(image);
  return {
    Containers: containers,
    Created: unixSeconds(image.config.created),
    Id: image.id,
    Labels: imageLabels(image),
    ParentId: "",
    RepoDigests: image.repoDigests,
    RepoTags: image.repoTags,
    SharedSize: -1,
    Size: size,
    VirtualSize: size,
  };
}

/** Docker's container config with the keys it always shows, the image's values over them. */
function fullConfig(config: Record<string, unknown> | null | undefined): Record<string, unknown> {
  return {
    Hostname: "",
    Domainname: "",
    User: "",
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: null,
    Cmd: null,
    Image: "",
    Volumes: null,
    WorkingDir: "",
    Entrypoint: null,
    OnBuild: null,
    Labels: null,
    ...(config ?? {}),
  };
}

export async function inspectImage(catalog: ImageCatalog, image: EngineImage, lastTagTime?: string): Promise<Record<string, unknown>> {
  const size = await catalog.size(image);
  const c = image.config;
  const chains = chainIds(image.diffIds);
  return {
    Id: image.id,
    RepoTags: image.repoTags,
    RepoDigests: image.repoDigests,
    Parent: "",
    Comment: c.comment ?? "",
    Created: c.created ?? zeroTime,
    Container: c.container ?? "",
    ContainerConfig: fullConfig(c.container_config),
    DockerVersion: c.docker_version ?? "",
    Author: c.author ?? "",
    Config: fullConfig(c.config),
    Architecture: c.architecture ?? "",
    ...(c.variant ? { Variant: c.variant } : {}),
    Os: c.os ?? "",
    Size: size,
    VirtualSize: size,
    GraphDriver: { Name: "overlayfs", Data: chains.length > 0 ? { ChainID: chains.at(-1)! } : null },
    RootFS: { Type: "layers", Layers: image.diffIds },
    Metadata: { LastTagTime: lastTagTime ?? zeroTime },
  };
}

export interface HistoryRow {
  Id: string;
  Created: number;
  CreatedBy: string;
  Tags: string[] | null;
  Size: number;
  Comment: string;
}

/** Newest first; only the top row carries the ID (Docker shows `<missing>` for the rest). */
export async function imageHistory(catalog: ImageCatalog, image: EngineImage): Promise<HistoryRow[]> {
  const history = image.config.history ?? [];
  const layerSizes: number[] = [];
  // Each non-empty history entry is one layer, in order.
  const partial = { ...image, diffIds: [] as string[], layers: image.layers };
  let previous = 0;
  for (let i = 0; i < image.diffIds.length; i++) {
    partial.diffIds = image.diffIds.slice(0, i + 1);
    const total = await catalog.size(partial);
    layerSizes.push(total - previous);
    previous = total;
  }
  let layer = 0;
  const rows: HistoryRow[] = history.map((entry) => ({
    Id: "<missing>",
    Created: unixSeconds(entry.created),
    CreatedBy: entry.created_by ?? "",
    Tags: null,
    Size: entry.empty_layer ? 0 : (layerSizes[layer++] ?? 0),
    Comment: entry.comment ?? "",
  }));
  if (rows.length === 0) rows.push({ Id: "<missing>", Created: unixSeconds(image.config.created), CreatedBy: "", Tags: null, Size: previous, Comment: "" });
  rows.reverse();
  rows[0]!.Id = image.id;
  rows[0]!.Tags = image.repoTags.length > 0 ? image.repoTags : null;
  return rows;
}
