// The OCI runtime spec (config.json) of a container, generated in one place for every
// caller that runs one (berthctl run, the Engine API, the demo): the defaults a container
// gets from containerd's and Docker's engines — its own namespaces, the usual /proc, /dev
// and /sys mounts, the default capability set, masked and read-only kernel paths, a
// cgroup of its own — with the image's and the caller's settings laid over them.
// runc reads the result; every knob of a container is a field here.

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface OciResources {
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string };
  pids?: { limit: number };
  devices?: { allow: boolean; access?: string; type?: string; major?: number; minor?: number }[];
}

/** The parts of the OCI runtime spec Berth writes; runc accepts more, and the rest is passed through. */
export interface OciRuntimeSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: OciUser;
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<"bounding" | "effective" | "permitted", string[]>;
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
    consoleSize?: { height: number; width: number };
  };
  root: { path: string; readonly?: boolean };
  hostname: string;
  mounts: OciMount[];
  annotations?: Record<string, string>;
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath: string;
    resources: OciResources;
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

export const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The capabilities containerd and Docker give a container that is not privileged. */
export const defaultCapabilities: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** Kernel files that leak host facts or give a way out: hidden (masked) or read-only. */
const maskedPaths = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
];
const readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

function defaultMounts(): OciMount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
  ];
}

/** How the container is networked: its own namespace (loopback only until a network joins it), the host's, or one that exists. */
export type NetworkMode = { kind: "private" } | { kind: "host" } | { kind: "join"; path: string };

export interface ContainerSpecOptions {
  /** The namespace and id name the container's cgroup: /<namespace>/<id>. */
  namespace: string;
  id: string;
  /** The command; required (an image's entrypoint and cmd are resolved by processFromImage). */
  args: string[];
  env?: string[];
  cwd?: string;
  user?: OciUser;
  terminal?: boolean;
  hostname?: string;
  readonlyRootfs?: boolean;
  network?: NetworkMode;
  /** Extra mounts (binds, tmpfs) after the defaults; one on a default's destination replaces it. */
  mounts?: OciMount[];
  resources?: OciResources;
  /** All capabilities, every device, no masked paths, writable /sys (as `--privileged`). */
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  annotations?: Record<string, string>;
}

const allCapabilities = [
  ...defaultCapabilities,
  "CAP_DAC_READ_SEARCH",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_LEASE",
  "CAP_AUDIT_CONTROL",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
];

/** "net_admin", "NET_ADMIN" and "CAP_NET_ADMIN" all name CAP_NET_ADMIN; "ALL" every capability. */
function capabilityName(name: string): string {
  const upper = name.trim().toUpperCase();
  return upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
}

function capabilities(options: ContainerSpecOptions): string[] {
  if (options.privileged) return [...allCapabilities];
  const adds = (options.capAdd ?? []).map(capabilityName);
  const drops = new Set((options.capDrop ?? []).map(capabilityName));
  let caps = adds.includes("CAP_ALL") ? [...allCapabilities] : [...defaultCapabilities, ...adds];
  if (drops.has("CAP_ALL")) caps = adds.filter((c) => c !== "CAP_ALL");
  return [...new Set(caps)].filter((c) => !drops.has(c));
}

function namespaces(network: NetworkMode): { type: string; path?: string }[] {
  const own = ["pid", "ipc", "uts", "mount"].map((type) => ({ type }));
  if (network.kind === "host") return own;
  if (network.kind === "join") return [...own, { type: "network", path: network.path }];
  return [...own, { type: "network" }];
}

/** The mounts, with a caller's mount replacing a default one at the same destination. */
function mergeMounts(defaults: OciMount[], extra: OciMount[]): OciMount[] {
  const replaced = new Set(extra.map((m) => m.destination.replace(/\/+$/, "")));
  return [...defaults.filter((m) => !replaced.has(m.destination)), ...extra];
}

export function containerSpec(options: ContainerSpecOptions): OciRuntimeSpec {
  if (options.args.length === 0) throw new Error("a container needs a command (args is empty)");
  const network = options.network ?? { kind: "private" };
  const caps = capabilities(options);
  const env = options.env ?? [];
  const hostMounts: OciMount[] =
    network.kind === "host"
      ? [
          { destination: "/etc/hosts", type: "bind", source: "/etc/hosts", options: ["rbind", "ro"] },
          { destination: "/etc/resolv.conf", type: "bind", source: "/etc/resolv.conf", options: ["rbind", "ro"] },
        ]
      : [];
  let mounts = mergeMounts(defaultMounts(), [...hostMounts, ...(options.mounts ?? [])]);
  if (options.privileged) mounts = mounts.map((m) => (m.destination === "/sys" || m.destination === "/sys/fs/cgroup" ? { ...m, options: m.options?.filter((o) => o !== "ro") } : m));
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: Boolean(options.terminal),
      user: options.user ?? { uid: 0, gid: 0 },
      args: options.args,
      env: env.some((e) => e.startsWith("PATH=")) ? env : [defaultPath, ...env],
      cwd: options.cwd || "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      // The tasks service lowers these to the host's hard limits where it has less.
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: !options.privileged,
    },
    root: { path: "rootfs", readonly: Boolean(options.readonlyRootfs) },
    hostname: options.hostname ?? (network.kind === "host" ? "" : options.id.slice(0, 12)),
    mounts,
    ...(options.annotations ? { annotations: options.annotations } : {}),
    linux: {
      namespaces: namespaces(network),
      cgroupsPath: `/${options.namespace}/${options.id}`,
      resources: {
        devices: options.privileged ? [{ allow: true, access: "rwm" }] : [{ allow: false, access: "rwm" }],
        ...options.resources,
      },
      maskedPaths: options.privileged ? [] : [...maskedPaths],
      readonlyPaths: options.privileged ? [] : [...readonlyPaths],
    },
  };
}

/** The parts of an image's config (OCI image config `config`) that say how to run it. */
export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface ProcessOverrides {
  /** Replaces the image's entrypoint (and then its cmd is not used, as Docker does). */
  entrypoint?: string[];
  /** Replaces the image's cmd. */
  cmd?: string[];
  /** Added to the image's env; a name given again wins. */
  env?: string[];
  workingDir?: string;
  user?: string;
}

/** Env lists merged by name: later entries replace earlier ones with the same name. */
export function mergeEnv(...lists: (readonly string[] | undefined | null)[]): string[] {
  const byName = new Map<string, string>();
  for (const list of lists) for (const entry of list ?? []) byName.set(entry.split("=", 1)[0]!, entry);
  return [...byName.values()];
}

/**
 * The process an image runs, as Docker computes it: entrypoint + cmd, where an entrypoint
 * given by the caller drops the image's cmd; the image's env under the caller's; the
 * caller's workdir and user over the image's.
 */
export function processFromImage(image: ImageRunConfig, overrides: ProcessOverrides = {}): { args: string[]; env: string[]; cwd: string; user: string } {
  const entrypoint = overrides.entrypoint ?? image.Entrypoint ?? [];
  const cmd = overrides.cmd ?? (overrides.entrypoint ? [] : (image.Cmd ?? []));
  return {
    args: [...entrypoint, ...cmd],
    env: mergeEnv(image.Env, overrides.env),
    cwd: overrides.workingDir || image.WorkingDir || "/",
    user: overrides.user ?? image.User ?? "",
  };
}
