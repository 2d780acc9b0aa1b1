// What list and inspect show of a record: Docker's shapes, with the texts the server
// builds (Status "Up 5 seconds", "Exited (3) 2 seconds ago"), and the ps filters.
import type { ContainerRecord } from "../store.ts";
import { zeroTime } from "../store.ts";
import { labelsMatch, type Filters } from "../query.ts";
import { badRequest } from "../http.ts";
import { normalizeDockerRef } from "../../../core/image/reference.ts";

/** Go's units.HumanDuration wording, which the CLI shows as the server sends it. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(hours / 24 / 365)} years`;
}

const since = (time: string, nowMs: number) => humanDuration(Math.max(0, nowMs - Date.parse(time)));

export function statusText(record: ContainerRecord, nowMs = Date.now()): string {
  const s = record.State;
  if (s.Restarting) return `Restarting (${s.ExitCode}) ${since(s.FinishedAt, nowMs)} ago`;
  if (s.Running) return `Up ${since(s.StartedAt, nowMs)}${s.Paused ? " (Paused)" : ""}`;
  if (s.Status === "removing") return "Removal In Progress";
  if (s.Dead) return "Dead";
  if (s.Status === "created" || s.StartedAt === zeroTime) return "Created";
  return `Exited (${s.ExitCode}) ${since(s.FinishedAt, nowMs)} ago`;
}

/** The state name list and filters use. */
export function stateName(record: ContainerRecord): string {
  const s = record.State;
  if (s.Restarting) return "restarting";
  if (s.Paused) return "paused";
  if (s.Running) return "running";
  return s.Status === "created" ? "created" : s.Status;
}

/** A command line the way ps shows it: words joined, quoted where a shell would need it. */
export function commandText(record: ContainerRecord): string {
  return [record.Path, ...record.Args].map((word) => (word === "" || /[\s'"\\$`]/.test(word) ? `'${word.replace(/'/g, `'\\''`)}'` : word)).join(" ");
}

function networkName(record: ContainerRecord): string {
  const mode = record.HostConfig.NetworkMode ?? "default";
  return mode === "default" ? "bridge" : mode;
}

function mountsOf(record: ContainerRecord) {
  const out: Record<string, unknown>[] = [];
  for (const bind of record.HostConfig.Binds ?? []) {
    const [source, destination, mode = ""] = bind.split(":");
    if (!source?.startsWith("/")) continue; // a named volume: in record.Mounts
    out.push({ Type: "bind", Source: source, Destination: destination, Mode: mode, RW: !mode.split(",").includes("ro"), Propagation: "rprivate" });
  }
  for (const m of record.HostConfig.Mounts ?? []) {
    if (m.Type === "volume") continue;
    out.push({ Type: m.Type, Source: m.Source ?? "", Destination: m.Target, Mode: "", RW: !m.ReadOnly, Propagation: m.Type === "bind" ? "rprivate" : "" });
  }
  out.push(...((record as { Mounts?: Record<string, unknown>[] }).Mounts ?? []));
  for (const destination of Object.keys(record.HostConfig.Tmpfs ?? {})) out.push({ Type: "tmpfs", Source: "", Destination: destination, Mode: "", RW: true, Propagation: "" });
  return out;
}

function networks(record: ContainerRecord) {
  const name = networkName(record);
  if (name === "host" || name.startsWith("container:")) return {};
  return { [name]: { IPAMConfig: null, Links: null, Aliases: null, NetworkID: "", EndpointID: "", Gateway: "", IPAddress: "", IPPrefixLen: 0, IPv6Gateway: "", GlobalIPv6Address: "", GlobalIPv6PrefixLen: 0, MacAddress: "", DriverOpts: null } };
}

/** One element of GET /containers/json. */
/** What networks/manager.ts settingsOf gives: the container's addresses, ports and networks. */
export type NetworkSettingsView = { Networks: Record<string, unknown>; Ports: Record<string, { HostIp: string; HostPort: string }[] | null> } & Record<string, unknown>;

/** `docker ps`'s Ports column: one entry per published (or only exposed) port. */
function portList(settings: NetworkSettingsView | undefined) {
  const out: { IP?: string; PrivatePort: number; PublicPort?: number; Type: string }[] = [];
  for (const [key, bindings] of Object.entries(settings?.Ports ?? {})) {
    const [port = "0", type = "tcp"] = key.split("/");
    if (!bindings || bindings.length === 0) out.push({ PrivatePort: Number(port), Type: type });
    for (const b of bindings ?? []) out.push({ IP: b.HostIp, PrivatePort: Number(port), PublicPort: Number(b.HostPort), Type: type });
  }
  return out;
}

export function listEntry(record: ContainerRecord, settings?: NetworkSettingsView) {
  return {
    Id: record.Id,
    Names: [record.Name],
    Image: record.Config.Image ?? "",
    ImageID: record.Image,
    Command: commandText(record),
    Created: Math.floor(Date.parse(record.Created) / 1000),
    Ports: portList(settings),
    Labels: record.Config.Labels ?? {},
    State: stateName(record),
    Status: statusText(record),
    HostConfig: { NetworkMode: record.HostConfig.NetworkMode ?? "default" },
    NetworkSettings: { Networks: settings?.Networks ?? networks(record) },
    Mounts: mountsOf(record),
  };
}

/** GET /containers/{id}/json. */
export function inspectView(record: ContainerRecord, extra: { driver: string; execIds?: string[] | null; networkSettings?: NetworkSettingsView; hostsPath?: string }) {
  return {
    Id: record.Id,
    Created: record.Created,
    Path: record.Path,
    Args: record.Args,
    State: { ...record.State, Status: stateName(record) },
    Image: record.Image,
    ResolvConfPath: "",
    HostnamePath: "",
    HostsPath: "",
    LogPath: record.LogPath,
    Name: record.Name,
    RestartCount: record.RestartCount,
    Driver: extra.driver,
    Platform: "linux",
    MountLabel: "",
    ProcessLabel: "",
    AppArmorProfile: "",
    ExecIDs: extra.execIds && extra.execIds.length > 0 ? extra.execIds : null,
    HostConfig: record.HostConfig,
    GraphDriver: { Name: extra.driver, Data: null },
    Mounts: mountsOf(record),
    Config: record.Config,
    NetworkSettings: extra.networkSettings ?? {
      Bridge: "",
      SandboxID: "",
      HairpinMode: false,
      LinkLocalIPv6Address: "",
      LinkLocalIPv6PrefixLen: 0,
      Ports: {},
      SandboxKey: record.State.Pid ? `/proc/${record.State.Pid}/ns/net` : "",
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: "",
      Gateway: "",
      GlobalIPv6Address: "",
      GlobalIPv6PrefixLen: 0,
      IPAddress: "",
      IPPrefixLen: 0,
      IPv6Gateway: "",
      MacAddress: "",
      Networks: networks(record),
    },
  };
}

export const listFilterNames = ["status", "name", "id", "label", "ancestor", "exited", "before", "since", "network", "volume", "health", "is-task", "publish", "expose"] as const;

const statuses = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

function sameImage(record: ContainerRecord, wanted: string): boolean {
  const typed = record.Config.Image ?? "";
  if (typed === wanted) return true;
  if (record.Image === wanted || record.Image.slice("sha256:".length).startsWith(wanted.replace(/^sha256:/, ""))) return /^(sha256:)?[0-9a-f]{6,}$/.test(wanted);
  try {
    return normalizeDockerRef(typed) === normalizeDockerRef(wanted);
  } catch {
    return false;
  }
}

/**
 * The records `docker ps` shows, newest first: running ones unless `all`, narrowed by the
 * filters (OR within a name, AND across names), `limit` (> 0) newest.
 */
export function listContainers(records: readonly ContainerRecord[], filters: Filters, all: boolean, limit: number, resolve: (ref: string) => ContainerRecord | undefined): ContainerRecord[] {
  for (const status of filters.get("status") ?? []) if (!statuses.includes(status)) throw badRequest(`Invalid filter 'status=${status}'`);
  for (const code of filters.get("exited") ?? []) if (!/^-?\d+$/.test(code)) throw badRequest(`Invalid filter 'exited=${code}'`);
  const boundary = (name: string) => {
    const values = filters.get(name);
    if (!values || values.length === 0) return undefined;
    const record = resolve(values[0]!);
    if (!record) throw badRequest(`No such container: ${values[0]}`);
    return record;
  };
  const before = boundary("before");
  const sinceRecord = boundary("since");
  const any = (name: string, test: (value: string) => boolean) => {
    const values = filters.get(name);
    return !values || values.length === 0 || values.some(test);
  };
  const namePatterns = (filters.get("name") ?? []).map((n) => {
    try {
      return new RegExp(n);
    } catch {
      throw badRequest(`Invalid filter 'name=${n}': not a valid regular expression`);
    }
  });
  const showAll = all || (filters.get("status")?.length ?? 0) > 0 || (filters.get("exited")?.length ?? 0) > 0 || limit > 0 || before !== undefined || sinceRecord !== undefined;
  const out = records.filter((r) => {
    if (!showAll && !r.State.Running) return false;
    if (!any("status", (s) => stateName(r) === s)) return false;
    if (namePatterns.length > 0 && !namePatterns.some((p) => p.test(r.Name.slice(1)) || p.test(r.Name))) return false;
    if (!any("id", (p) => r.Id.startsWith(p))) return false;
    if (!labelsMatch(r.Config.Labels, filters.get("label"))) return false;
    if (!any("ancestor", (a) => sameImage(r, a))) return false;
    if (!any("exited", (c) => stateName(r) === "exited" && r.State.ExitCode === Number(c))) return false;
    if (!any("network", (n) => networkName(r) === n)) return false;
    if (!any("volume", (v) => mountsOf(r).some((m) => m.Source === v || m.Destination === v))) return false;
    if (!any("is-task", (t) => t === "false" || t === "0")) return false;
    if (before && !(r.Created < before.Created)) return false;
    if (sinceRecord && !(r.Created > sinceRecord.Created)) return false;
    return true;
  });
  return limit > 0 ? out.slice(0, limit) : out;
}
