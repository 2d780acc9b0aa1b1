// The volumes a container mounts, as its create resolves them: named volumes in binds
// ("name:/path[:ro]") and in --mount (type volume), created on first use as Docker does,
// and anonymous volumes for the image's or the request's VOLUME paths no bind covers. The
// result is OCI bind mounts of the volumes' directories, and the Mounts entries container
// inspect shows (kept in the container's record, so the volumes count as used).
import { posix } from "node:path";
import type { OciMount } from "../../../core/oci/spec.ts";
import { badRequest, notFoundError } from "../http.ts";
import type { Backend } from "../backend.ts";
import type { ContainerConfig, ContainerRecord, EngineStore, HostConfig } from "../store.ts";
import { parseBind } from "../containers/config.ts";
import { volumeStore } from "./index.ts";
import { checkVolumeName, type VolumeStore } from "./store.ts";
import { isVolumeSource, volumeUsers } from "./usage.ts";

export interface VolumeMountPoint {
  Type: "volume";
  Name: string;
  Source: string;
  Destination: string;
  Driver: string;
  Mode: string;
  RW: boolean;
  Propagation: "";
}

export interface ContainerVolumes {
  mounts: OciMount[];
  points: VolumeMountPoint[];
  /** Volumes this call created (for `volume create` events, and removal if the create fails). */
  created: string[];
  /** Anonymous volumes among them (removed with the container under `rm -v`). */
  anonymous: string[];
}

/** A bind spec whose source names a volume: "name:/path[:mode]". */
export function isVolumeBind(spec: string): boolean {
  const source = spec.split(":")[0] ?? "";
  return spec.includes(":") && isVolumeSource(source);
}

/** A container whose volumes and binds another mounts (`--volumes-from NAME[:ro|rw]`). */
export interface VolumesFromSource {
  record: ContainerRecord;
  /** ro or rw forces the mode; unset keeps each mount's own. */
  readOnly?: boolean;
}

/** HostConfig.VolumesFrom resolved to containers: an unknown one is Docker's 404, a bad mode a 400. */
export function volumesFromSources(containers: EngineStore, host: HostConfig): VolumesFromSource[] {
  const specs = (host.VolumesFrom as string[] | null | undefined) ?? [];
  if (!Array.isArray(specs) || specs.some((s) => typeof s !== "string")) throw badRequest("HostConfig.VolumesFrom must be a list of strings");
  return specs.map((spec) => {
    const [ref = "", mode, ...rest] = spec.split(":");
    if (rest.length > 0 || (mode !== undefined && mode !== "ro" && mode !== "rw")) throw badRequest(`invalid volumes-from specification: '${spec}' (expected NAME[:ro|rw])`);
    const record = containers.resolve(ref);
    if (!record) throw notFoundError(`No such container: ${ref}`);
    return mode === undefined ? { record } : { record, readOnly: mode === "ro" };
  });
}

export function resolveContainerVolumes(store: VolumeStore, config: ContainerConfig, host: HostConfig, from: readonly VolumesFromSource[] = []): ContainerVolumes {
  const result: ContainerVolumes = { mounts: [], points: [], created: [], anonymous: [] };
  const destinations = new Set<string>();
  const use = (name: string, destination: string, readOnly: boolean, mode: string, anonymous: boolean) => {
    if (!posix.isAbsolute(destination) || destination === "/") throw badRequest(`invalid volume specification: '${name}:${destination}': the container path must be an absolute path other than /`);
    if (destinations.has(destination)) throw badRequest(`Duplicate mount point: ${destination}`);
    destinations.add(destination);
    const { volume, created } = store.create({ Name: name });
    if (created) result.created.push(volume.Name);
    if (created && anonymous) result.anonymous.push(volume.Name);
    result.mounts.push({ destination, type: "bind", source: volume.Mountpoint, options: ["rbind", "rprivate", readOnly ? "ro" : "rw"] });
    result.points.push({ Type: "volume", Name: volume.Name, Source: volume.Mountpoint, Destination: destination, Driver: volume.Driver, Mode: mode, RW: !readOnly, Propagation: "" });
  };
  try {
    addAll(config, host, destinations, use);
    addVolumesFrom(from, destinations, use, result.mounts);
  } catch (err) {
    // nothing half-made: the volumes this create made go again
    for (const made of result.created) store.remove(made);
    throw err;
  }
  return result;
}

/** Calls `use` for every volume the container mounts: binds, --mount volumes, then VOLUME paths nothing else covers. */
function addAll(
  config: ContainerConfig,
  host: HostConfig,
  destinations: Set<string>,
  use: (name: string, destination: string, readOnly: boolean, mode: string, anonymous: boolean) => void,
): void {
  for (const spec of host.Binds ?? []) {
    if (!isVolumeBind(spec)) {
      destinations.add(spec.split(":")[1] ?? "");
      continue;
    }
    const [name = "", destination = "", mode = "", ...rest] = spec.split(":");
    if (rest.length > 0 || !destination) throw badRequest(`invalid volume specification: '${spec}'`);
    checkVolumeName(name);
    const options = mode ? mode.split(",") : [];
    for (const o of options) if (!["ro", "rw", "z", "Z", "nocopy"].includes(o)) throw badRequest(`invalid mode: ${o}`);
    use(name, destination, options.includes("ro"), mode || "z", false);
  }
  for (const m of host.Mounts ?? []) {
    if (m.Type !== "volume") {
      if (m.Target) destinations.add(m.Target);
      continue;
    }
    if (!m.Target) throw badRequest("invalid mount config: the target must be an absolute path");
    if (m.Source) checkVolumeName(m.Source);
    use(m.Source ?? "", m.Target, Boolean(m.ReadOnly), "z", !m.Source);
  }
  for (const destination of Object.keys(host.Tmpfs ?? {})) destinations.add(destination);
  for (const destination of Object.keys(config.Volumes ?? {})) {
    if (!destinations.has(destination)) use("", destination, false, "", true);
  }
}

/** The volumes and host binds of `--volumes-from` containers, at the same paths, where the container has nothing of its own. */
function addVolumesFrom(
  from: readonly VolumesFromSource[],
  destinations: Set<string>,
  use: (name: string, destination: string, readOnly: boolean, mode: string, anonymous: boolean) => void,
  mounts: OciMount[],
): void {
  for (const { record, readOnly } of from) {
    for (const point of (record as { Mounts?: VolumeMountPoint[] }).Mounts ?? []) {
      if (!destinations.has(point.Destination)) use(point.Name, point.Destination, readOnly ?? !point.RW, point.Mode, false);
    }
    for (const spec of record.HostConfig.Binds ?? []) {
      const bind = parseBind(spec);
      if (bind.volume || destinations.has(bind.destination)) continue;
      destinations.add(bind.destination);
      mounts.push({ destination: bind.destination, type: "bind", source: bind.source, options: ["rbind", bind.propagation ?? "rprivate", (readOnly ?? bind.readOnly) ? "ro" : "rw"] });
    }
  }
}

/** After a container is gone (rm -v, auto-removal): its anonymous volumes that no other container uses. */
export function removeAnonymousVolumes(backend: Backend, record: ContainerRecord): void {
  const anonymous = (record as { AnonymousVolumes?: string[] }).AnonymousVolumes ?? [];
  if (anonymous.length === 0) return;
  const users = volumeUsers(backend.store);
  for (const name of anonymous) {
    if (users.has(name)) continue;
    try {
      volumeStore(backend).remove(name);
      backend.events.publish("volume", "destroy", name, { driver: "local" });
    } catch (err) {
      backend.log.warn({ volume: name, err: (err as Error).message }, "removing an anonymous volume failed");
    }
  }
}
