// From create's body to what the container is: the Docker Config (image defaults merged
// in, as inspect shows it), the HostConfig with Docker's defaults, and the OCI runtime
// spec generated from both through core/oci (the one place specs are made).
import { existsSync, mkdirSync } from "node:fs";
import { isAbsolute, posix } from "node:path";
import { containerSpec, mergeEnv, processFromImage, type NetworkMode, type OciMount, type OciResources, type OciRuntimeSpec, type OciUser } from "../../../core/oci/spec.ts";
import type { ContainerConfig, HostConfig } from "../store.ts";
import { checkVolumeName } from "../volumes/store.ts";
import { badRequest } from "../http.ts";
import type { ImageRunDefaults } from "./image.ts";

/** The body of POST /containers/create: a Config with HostConfig and NetworkingConfig beside it. */
export interface CreateBody extends ContainerConfig {
  HostConfig?: HostConfig | null;
  NetworkingConfig?: unknown;
}

function stringList(value: unknown, what: string): string[] | null | undefined {
  if (value === undefined || value === null) return value as null | undefined;
  if (typeof value === "string") return [value];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw badRequest(`${what} must be a list of strings`);
  return value as string[];
}

function stringMap(value: unknown, what: string): Record<string, string> | null | undefined {
  if (value === undefined || value === null) return value as null | undefined;
  if (typeof value !== "object" || Array.isArray(value) || !Object.values(value).every((v) => typeof v === "string")) {
    throw badRequest(`${what} must be an object of strings`);
  }
  return value as Record<string, string>;
}

function optionalString(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw badRequest(`${what} must be a string`);
  return value;
}

function optionalNumber(value: unknown, what: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) throw badRequest(`${what} must be a number`);
  return value;
}

/** Checks the fields whose type matters before anything is stored. */
export function checkCreateBody(body: CreateBody): void {
  optionalString(body.Image, "Image");
  stringList(body.Cmd, "Cmd");
  stringList(body.Entrypoint, "Entrypoint");
  stringList(body.Env, "Env");
  stringMap(body.Labels, "Labels");
  optionalString(body.User, "User");
  optionalString(body.WorkingDir, "WorkingDir");
  optionalString(body.Hostname, "Hostname");
  optionalString(body.StopSignal, "StopSignal");
  optionalNumber(body.StopTimeout, "StopTimeout");
  for (const entry of body.Env ?? []) if (!entry.split("=", 1)[0]) throw badRequest(`invalid environment variable: ${entry}`);
  if (body.WorkingDir && !posix.isAbsolute(body.WorkingDir)) throw badRequest(`the working directory '${body.WorkingDir}' is invalid, it needs to be an absolute path`);
  const host = body.HostConfig;
  if (host === undefined || host === null) return;
  if (typeof host !== "object" || Array.isArray(host)) throw badRequest("HostConfig must be an object");
  stringList(host.Binds, "HostConfig.Binds");
  stringMap(host.Tmpfs, "HostConfig.Tmpfs");
  for (const field of ["Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "PidsLimit"] as const) optionalNumber(host[field], `HostConfig.${field}`);
  if ((host.Memory ?? 0) < 0) throw badRequest("invalid memory limit: it must not be negative");
  if ((host.NanoCpus ?? 0) < 0) throw badRequest("invalid NanoCpus: it must not be negative");
  if (host.Memory && host.Memory > 0 && host.Memory < 6 * 1024 * 1024) throw badRequest("Minimum memory limit allowed is 6MB");
  const policy = host.RestartPolicy;
  if (policy && policy.Name && !["no", "always", "unless-stopped", "on-failure"].includes(policy.Name)) throw badRequest(`invalid restart policy '${policy.Name}'`);
  if (policy && policy.Name !== "on-failure" && (policy.MaximumRetryCount ?? 0) > 0) throw badRequest(`maximum retry count cannot be used with restart policy '${policy.Name}'`);
  if (host.AutoRemove && policy?.Name && policy.Name !== "no") throw badRequest("can't create 'AutoRemove' container with restart policy");
  for (const bind of host.Binds ?? []) parseBind(bind);
  networkModeOf(host.NetworkMode ?? "");
}

/** The stored Config: what the client sent, with the image's defaults where it sent none. */
export function mergedConfig(body: CreateBody, image: ImageRunDefaults, id: string): ContainerConfig {
  const { HostConfig: _host, NetworkingConfig: _net, ...config } = body;
  void _host;
  void _net;
  const entrypointGiven = Array.isArray(body.Entrypoint);
  const entrypoint = entrypointGiven ? (body.Entrypoint!.length === 1 && body.Entrypoint![0] === "" ? null : body.Entrypoint!) : (image.Entrypoint ?? null);
  return {
    ...config,
    Hostname: body.Hostname || id.slice(0, 12),
    Domainname: body.Domainname ?? "",
    User: body.User || image.User || "",
    Env: mergeEnv(image.Env, body.Env),
    Cmd: body.Cmd ?? (entrypointGiven ? null : (image.Cmd ?? null)),
    Entrypoint: entrypoint,
    WorkingDir: body.WorkingDir || image.WorkingDir || "",
    Labels: { ...(image.Labels ?? {}), ...(body.Labels ?? {}) },
    StopSignal: body.StopSignal || image.StopSignal || undefined,
    ExposedPorts: body.ExposedPorts ?? image.ExposedPorts ?? undefined,
    Volumes: body.Volumes ?? image.Volumes ?? null,
    Tty: Boolean(body.Tty),
    OpenStdin: Boolean(body.OpenStdin),
    StdinOnce: Boolean(body.StdinOnce),
    AttachStdin: Boolean(body.AttachStdin),
    AttachStdout: Boolean(body.AttachStdout),
    AttachStderr: Boolean(body.AttachStderr),
  };
}

/** The command (path + args) a Config runs; none at all is Docker's 400. */
export function commandOf(config: ContainerConfig): string[] {
  const args = processFromImage({}, { entrypoint: config.Entrypoint ?? [], cmd: config.Cmd ?? [] }).args;
  if (args.length === 0) throw badRequest("No command specified");
  return args;
}

/** HostConfig as inspect shows it: the client's, with Docker's defaults filled in. */
export function defaultedHostConfig(host: HostConfig | null | undefined): HostConfig {
  const h = { ...(host ?? {}) };
  return {
    ...h,
    NetworkMode: h.NetworkMode || "default",
    RestartPolicy: { Name: h.RestartPolicy?.Name || "no", MaximumRetryCount: h.RestartPolicy?.MaximumRetryCount ?? 0 },
    LogConfig: { Type: h.LogConfig?.Type || "json-file", Config: h.LogConfig?.Config ?? {} },
    AutoRemove: Boolean(h.AutoRemove),
    Binds: h.Binds ?? null,
    Memory: h.Memory ?? 0,
    NanoCpus: h.NanoCpus ?? 0,
    PidsLimit: h.PidsLimit ?? null,
    ReadonlyRootfs: Boolean(h.ReadonlyRootfs),
    ShmSize: (h.ShmSize as number | undefined) || 67108864,
    Runtime: "runc",
  };
}

export interface Bind {
  source: string;
  destination: string;
  readOnly: boolean;
  propagation?: string;
  /** The source names a volume. */
  volume?: boolean;
}

/** "/host:/ctr[:ro|rw[,…]]"; a named volume (no leading slash) is not served yet. */
export function parseBind(spec: string): Bind {
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1]) throw badRequest(`invalid volume specification: '${spec}'`);
  const [source, destination, mode = ""] = parts as [string, string, string?];
  if (!posix.isAbsolute(destination)) throw badRequest(`invalid volume specification: '${spec}': the container path must be absolute`);
  if (destination === "/") throw badRequest(`invalid volume specification: '${spec}': the container path cannot be '/'`);
  if (!isAbsolute(source)) {
    // a named volume: resolved by volumes/mounts.ts
    checkVolumeName(source);
    return { source, destination, readOnly: mode.split(",").includes("ro"), volume: true };
  }
  const options = mode ? mode.split(",") : [];
  let readOnly = false;
  let propagation: string | undefined;
  for (const option of options) {
    if (option === "ro") readOnly = true;
    else if (option === "rw" || option === "z" || option === "Z" || option === "nocopy") continue;
    else if (["private", "rprivate", "shared", "rshared", "slave", "rslave"].includes(option)) propagation = option;
    else throw badRequest(`invalid mode: ${option}`);
  }
  return { source, destination, readOnly, ...(propagation ? { propagation } : {}) };
}

export type NetworkChoice = { mode: "private" } | { mode: "host" } | { mode: "container"; ref: string } | { mode: "network"; ref: string };

/** none: a namespace with loopback only; host; container:<id>; default/bridge or a network's name or id: that network. */
export function networkModeOf(mode: string): NetworkChoice {
  if (mode === "none") return { mode: "private" };
  if (mode === "host") return { mode: "host" };
  if (mode.startsWith("container:")) return { mode: "container", ref: mode.slice("container:".length) };
  return { mode: "network", ref: mode === "" || mode === "default" ? "bridge" : mode };
}

function resources(host: HostConfig): OciResources {
  const r: OciResources = {};
  if (host.Memory && host.Memory > 0) r.memory = { limit: host.Memory, ...(host.MemorySwap && host.MemorySwap > 0 ? { swap: host.MemorySwap } : {}) };
  const cpu: NonNullable<OciResources["cpu"]> = {};
  if (host.NanoCpus && host.NanoCpus > 0) {
    cpu.period = 100_000;
    cpu.quota = Math.round((host.NanoCpus * 100_000) / 1e9);
  }
  if (host.CpuQuota && host.CpuQuota > 0) cpu.quota = host.CpuQuota;
  if (host.CpuPeriod && host.CpuPeriod > 0) cpu.period = host.CpuPeriod;
  if (host.CpuShares && host.CpuShares > 0) cpu.shares = host.CpuShares;
  if (Object.keys(cpu).length > 0) r.cpu = cpu;
  if (host.PidsLimit && host.PidsLimit > 0) r.pids = { limit: host.PidsLimit };
  return r;
}

function mounts(host: HostConfig, files: ContainerFiles | undefined): OciMount[] {
  const out: OciMount[] = [];
  if (files) {
    out.push({ destination: "/etc/hosts", type: "bind", source: files.hosts, options: ["rbind", "rprivate"] });
    out.push({ destination: "/etc/hostname", type: "bind", source: files.hostname, options: ["rbind", "rprivate"] });
    out.push({ destination: "/etc/resolv.conf", type: "bind", source: files.resolvConf, options: ["rbind", "rprivate"] });
  }
  for (const spec of host.Binds ?? []) {
    const bind = parseBind(spec);
    if (bind.volume) continue;
    // As Docker does for -v: a missing host directory is made.
    if (!existsSync(bind.source)) mkdirSync(bind.source, { recursive: true });
    out.push({ destination: bind.destination, type: "bind", source: bind.source, options: ["rbind", bind.propagation ?? "rprivate", bind.readOnly ? "ro" : "rw"] });
  }
  for (const m of host.Mounts ?? []) {
    if (!m.Target || !posix.isAbsolute(m.Target)) throw badRequest(`invalid mount config: the target must be an absolute path`);
    if (m.Type === "bind") {
      if (!m.Source || !isAbsolute(m.Source)) throw badRequest(`invalid mount config for type "bind": the source must be an absolute path`);
      if (!existsSync(m.Source)) throw badRequest(`invalid mount config for type "bind": bind source path does not exist: ${m.Source}`);
      out.push({ destination: m.Target, type: "bind", source: m.Source, options: ["rbind", "rprivate", m.ReadOnly ? "ro" : "rw"] });
    } else if (m.Type === "volume") {
      continue; // volumes/mounts.ts
    } else if (m.Type === "tmpfs") {
      out.push({ destination: m.Target, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "noexec", ...(m.ReadOnly ? ["ro"] : [])] });
    } else {
      throw badRequest(`invalid mount config: mount type "${m.Type ?? ""}" is not supported by this engine yet`);
    }
  }
  for (const [destination, options] of Object.entries(host.Tmpfs ?? {})) {
    if (!posix.isAbsolute(destination)) throw badRequest(`invalid tmpfs mount: '${destination}' is not an absolute path`);
    out.push({ destination, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "noexec", ...options.split(",").filter(Boolean)] });
  }
  return out;
}

/** Files the engine writes per container and binds in: /etc/hosts, /etc/hostname, /etc/resolv.conf. */
export interface ContainerFiles {
  hosts: string;
  hostname: string;
  resolvConf: string;
}

export interface SpecInputs {
  namespace: string;
  id: string;
  config: ContainerConfig;
  host: HostConfig;
  user: OciUser;
  /** The network namespace to join (container:<id> mode). */
  network: NetworkMode;
  files?: ContainerFiles;
  /** Mounts resolved elsewhere (volumes). */
  extraMounts?: OciMount[];
}

export function buildSpec(input: SpecInputs): OciRuntimeSpec {
  const { config, host } = input;
  return containerSpec({
    namespace: input.namespace,
    id: input.id,
    args: commandOf(config),
    env: config.Env ?? [],
    cwd: config.WorkingDir || "/",
    user: input.user,
    terminal: Boolean(config.Tty),
    ...(input.network.kind === "host" ? {} : { hostname: config.Hostname || input.id.slice(0, 12) }),
    readonlyRootfs: Boolean(host.ReadonlyRootfs),
    network: input.network,
    mounts: [...mounts(host, input.network.kind === "host" ? undefined : input.files), ...(input.extraMounts ?? [])],
    resources: resources(host),
    privileged: Boolean(host.Privileged),
    ...(host.CapAdd ? { capAdd: host.CapAdd } : {}),
    ...(host.CapDrop ? { capDrop: host.CapDrop } : {}),
  });
}
