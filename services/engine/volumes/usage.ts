// Which containers use which volumes, read from the engine's container records: named
// volumes in HostConfig.Binds ("name:/path[:mode]") and HostConfig.Mounts (Type volume),
// and the Mounts list a created container records (its anonymous volumes too).
import { existsSync } from "node:fs";
import type { ContainerRecord, EngineStore } from "../store.ts";
import { diskUsage, type Volume, type VolumeStore } from "./store.ts";

/** A bind spec's source is a volume name when it is not a path. */
export function isVolumeSource(source: string): boolean {
  return source !== "" && !source.startsWith("/") && !source.startsWith(".");
}

export function volumeNamesOf(record: ContainerRecord): string[] {
  const names = new Set<string>();
  for (const bind of record.HostConfig?.Binds ?? []) {
    const source = bind.split(":")[0] ?? "";
    if (bind.includes(":") && isVolumeSource(source)) names.add(source);
  }
  for (const mount of record.HostConfig?.Mounts ?? []) {
    if (mount.Type === "volume" && mount.Source) names.add(mount.Source);
  }
  const recorded = (record as { Mounts?: { Type?: string; Name?: string }[] }).Mounts;
  for (const mount of recorded ?? []) {
    if (mount.Type === "volume" && mount.Name) names.add(mount.Name);
  }
  return [...names];
}

/** Volume name → ids of the containers (running or not) that reference it. */
export function volumeUsers(containers: EngineStore): Map<string, string[]> {
  const users = new Map<string, string[]>();
  for (const record of containers.list()) {
    for (const name of volumeNamesOf(record)) {
      const ids = users.get(name) ?? [];
      ids.push(record.Id);
      users.set(name, ids);
    }
  }
  return users;
}

/** The Volumes of /system/df: each volume with its size and how many containers reference it. */
export function volumesDiskUsage(containers: EngineStore, volumes: VolumeStore): (Volume & { UsageData: { RefCount: number; Size: number } })[] {
  const users = volumeUsers(containers);
  return volumes.list().map((v) => ({ ...v, UsageData: { RefCount: users.get(v.Name)?.length ?? 0, Size: existsSync(v.Mountpoint) ? diskUsage(v.Mountpoint) : 0 } }));
}
