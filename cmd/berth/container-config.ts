// The create request `berth run` and `berth create` send, built from docker's flags:
// Config (image, cmd, env, tty, stdin…), HostConfig (binds, tmpfs, limits, restart
// policy, ports…) and NetworkingConfig. Malformed values fail here, before any request.
import { readFileSync } from "node:fs";
import type { Flags, FlagSpec } from "./args.ts";
import { CliError } from "./errors.ts";

export const createFlags: FlagSpec[] = [
  { name: "attach", short: "a", kind: "list", description: "Attach to STDIN, STDOUT or STDERR" },
  { name: "add-host", kind: "list", description: "Add a custom host-to-IP mapping (host:ip)" },
  { name: "cap-add", kind: "list", description: "Add Linux capabilities" },
  { name: "cap-drop", kind: "list", description: "Drop Linux capabilities" },
  { name: "cpus", kind: "string", value: "decimal", description: "Number of CPUs" },
  { name: "cpu-shares", kind: "string", value: "int", description: "CPU shares (relative weight)" },
  { name: "detach", short: "d", kind: "bool", description: "Run container in background and print container ID" },
  { name: "detach-keys", kind: "string", description: "Override the key sequence for detaching a container" },
  { name: "dns", kind: "list", description: "Set custom DNS servers" },
  { name: "entrypoint", kind: "string", description: "Overwrite the default ENTRYPOINT of the image" },
  { name: "env", short: "e", kind: "list", description: "Set environment variables" },
  { name: "env-file", kind: "list", description: "Read in a file of environment variables" },
  { name: "expose", kind: "list", description: "Expose a port or a range of ports" },
  { name: "hostname", short: "h", kind: "string", description: "Container host name" },
  { name: "init", kind: "bool", description: "Run an init inside the container that forwards signals and reaps processes" },
  { name: "interactive", short: "i", kind: "bool", description: "Keep STDIN open even if not attached" },
  { name: "label", short: "l", kind: "list", description: "Set meta data on a container" },
  { name: "memory", short: "m", kind: "string", value: "bytes", description: "Memory limit" },
  { name: "memory-swap", kind: "string", value: "bytes", description: "Swap limit equal to memory plus swap: '-1' to enable unlimited swap" },
  { name: "mount", kind: "list", value: "mount", description: "Attach a filesystem mount to the container" },
  { name: "name", kind: "string", description: "Assign a name to the container" },
  { name: "network", kind: "string", description: "Connect a container to a network", default: "default" },
  { name: "net", kind: "string", description: "Connect a container to a network (same as --network)" },
  { name: "pids-limit", kind: "string", value: "int", description: "Tune container pids limit (set -1 for unlimited)" },
  { name: "platform", kind: "string", description: "Set platform if server is multi-platform capable" },
  { name: "privileged", kind: "bool", description: "Give extended privileges to this container" },
  { name: "publish", short: "p", kind: "list", description: "Publish a container's port(s) to the host" },
  { name: "pull", kind: "string", description: 'Pull image before running ("always", "missing", "never")', default: "missing" },
  { name: "quiet", short: "q", kind: "bool", description: "Suppress the pull output" },
  { name: "read-only", kind: "bool", description: "Mount the container's root filesystem as read only" },
  { name: "restart", kind: "string", description: "Restart policy to apply when a container exits", default: "no" },
  { name: "rm", kind: "bool", description: "Automatically remove the container and its associated anonymous volumes when it exits" },
  { name: "security-opt", kind: "list", description: "Security Options" },
  { name: "shm-size", kind: "string", value: "bytes", description: "Size of /dev/shm" },
  { name: "sig-proxy", kind: "string", value: "bool", description: "Proxy received signals to the process", default: "true" },
  { name: "stop-signal", kind: "string", description: "Signal to stop the container" },
  { name: "stop-timeout", kind: "string", value: "int", description: "Timeout (in seconds) to stop a container" },
  { name: "tmpfs", kind: "list", description: "Mount a tmpfs directory" },
  { name: "tty", short: "t", kind: "bool", description: "Allocate a pseudo-TTY" },
  { name: "ulimit", kind: "list", value: "ulimit", description: "Ulimit options" },
  { name: "user", short: "u", kind: "string", description: "Username or UID (format: <name|uid>[:<group|gid>])" },
  { name: "volume", short: "v", kind: "list", description: "Bind mount a volume" },
  { name: "workdir", short: "w", kind: "string", description: "Working directory inside the container" },
];

/** RAMInBytes: "512m", "1g", "100000" (binary units, an optional b). */
export function parseBytes(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)b?$/i.exec(text.trim());
  if (!m) throw new CliError(`invalid argument "${text}" for "--${flag}" flag: invalid size: '${text}'`, 125);
  const scale = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[m[2]!.toLowerCase() as "" | "k"]!;
  return Math.floor(Number(m[1]) * scale);
}

function parseEnvFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new CliError(`open ${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (err as Error).message}`, 125);
  }
  const vars: string[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/^\s+/, "").replace(/\r$/, "");
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    const name = eq < 0 ? line : line.slice(0, eq);
    if (!name || /\s/.test(name)) throw new CliError(`invalid environment variable in ${file} line ${i + 1}: "${raw}"`, 125);
    if (eq < 0) {
      if (process.env[name] !== undefined) vars.push(`${name}=${process.env[name]}`);
    } else vars.push(line);
  }
  return vars;
}

function envList(flags: Flags): string[] {
  const vars = flags.list("env-file").flatMap(parseEnvFile);
  for (const item of flags.list("env")) {
    if (item.startsWith("=") || item === "") throw new CliError(`invalid environment variable: "${item}"`, 125);
    if (item.includes("=")) vars.push(item);
    else if (process.env[item] !== undefined) vars.push(`${item}=${process.env[item]}`);
  }
  return vars;
}

function parsePorts(specs: string[], expose: string[]) {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const spec of specs) {
    const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([0-9.]*)):)?(?:(\d*):)?(\d+)(?:\/(tcp|udp|sctp))?$/.exec(spec);
    if (!m) throw new CliError(`invalid argument "${spec}" for "-p, --publish" flag: expected [ip:][hostPort:]containerPort[/protocol]`, 125);
    let [, ip6, ip4, hostPort, port, proto] = m;
    // "8080:80": the first number is the host port, not an address.
    if (ip4 && !ip4.includes(".") && hostPort === undefined) {
      hostPort = ip4;
      ip4 = "";
    }
    const key = `${port}/${proto ?? "tcp"}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: ip6 ?? ip4 ?? "", HostPort: hostPort ?? "" });
  }
  for (const e of expose) {
    if (!/^\d+(\/(tcp|udp|sctp))?$/.test(e)) throw new CliError(`invalid argument "${e}" for "--expose" flag`, 125);
    exposed[e.includes("/") ? e : `${e}/tcp`] = {};
  }
  return { exposed, bindings };
}

function restartPolicy(text: string): { Name: string; MaximumRetryCount: number } {
  const [name, count, extra] = text.split(":");
  if (extra !== undefined || !["no", "always", "unless-stopped", "on-failure"].includes(name!)) {
    throw new CliError(`invalid restart policy "${text}": use no, always, unless-stopped or on-failure[:max-retries]`, 125);
  }
  if (count !== undefined && (name !== "on-failure" || !/^\d+$/.test(count))) throw new CliError(`invalid restart policy "${text}": only on-failure takes a retry count`, 125);
  return { Name: name!, MaximumRetryCount: count ? Number(count) : 0 };
}

function parseMount(spec: string): Record<string, unknown> {
  const mount: Record<string, unknown> = { Type: "volume" };
  for (const part of spec.split(",")) {
    const [key, value] = part.includes("=") ? [part.slice(0, part.indexOf("=")), part.slice(part.indexOf("=") + 1)] : [part, "true"];
    switch (key) {
      case "type":
        mount.Type = value;
        break;
      case "source":
      case "src":
        mount.Source = value;
        break;
      case "target":
      case "dst":
      case "destination":
        mount.Target = value;
        break;
      case "readonly":
      case "ro":
        mount.ReadOnly = value !== "false" && value !== "0";
        break;
      default:
        throw new CliError(`invalid field "${key}" in --mount "${spec}"`, 125);
    }
  }
  if (!mount.Target) throw new CliError(`invalid --mount "${spec}": target is required`, 125);
  return mount;
}

function parseUlimit(spec: string) {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(spec);
  if (!m) throw new CliError(`invalid ulimit "${spec}": expected name=soft[:hard]`, 125);
  return { Name: m[1], Soft: Number(m[2]), Hard: Number(m[3] ?? m[2]) };
}

export interface CreateRequest {
  name?: string;
  platform?: string;
  body: Record<string, unknown>;
}

/** The create request for `berth run/create [flags] IMAGE [COMMAND] [ARG...]`. */
export function buildCreate(flags: Flags, args: string[], detached: boolean): CreateRequest {
  const [image, ...cmd] = args;
  const interactive = flags.bool("interactive");
  const tty = flags.bool("tty");
  const attach = flags.list("attach").map((s) => s.toLowerCase());
  for (const a of attach) if (!["stdin", "stdout", "stderr"].includes(a)) throw new CliError(`invalid argument "${a}" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR`, 125);
  if (detached && attach.length) throw new CliError("Conflicting options: -a and -d", 125);
  const attachStdin = detached ? false : attach.length ? attach.includes("stdin") : interactive;
  const attachStdout = detached ? false : attach.length ? attach.includes("stdout") : true;
  const attachStderr = detached ? false : attach.length ? attach.includes("stderr") : true;
  const volumes: Record<string, object> = {};
  const binds: string[] = [];
  for (const v of flags.list("volume")) {
    if (!v) throw new CliError('invalid argument "" for "-v, --volume" flag: empty volume spec', 125);
    if (v.includes(":")) binds.push(v);
    else volumes[v] = {};
  }
  const tmpfs: Record<string, string> = {};
  for (const t of flags.list("tmpfs")) {
    const colon = t.indexOf(":");
    const path = colon < 0 ? t : t.slice(0, colon);
    if (!path.startsWith("/")) throw new CliError(`invalid argument "${t}" for "--tmpfs" flag: the mount point must be an absolute path`, 125);
    tmpfs[path] = colon < 0 ? "" : t.slice(colon + 1);
  }
  const labels: Record<string, string> = {};
  for (const l of flags.list("label")) {
    const eq = l.indexOf("=");
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
  }
  const { exposed, bindings } = parsePorts(flags.list("publish"), flags.list("expose"));
  const cpus = flags.string("cpus");
  if (cpus !== undefined && !/^\d+(\.\d+)?$/.test(cpus)) throw new CliError(`invalid argument "${cpus}" for "--cpus" flag: failed to parse ${cpus} as a rational number`, 125);
  const network = flags.string("net") ?? flags.string("network") ?? "default";
  const memory = flags.string("memory");
  const swap = flags.string("memory-swap");
  const shm = flags.string("shm-size");
  const entrypoint = flags.string("entrypoint");
  const stopTimeout = flags.int("stop-timeout");
  const size = tty && process.stdout.isTTY ? [process.stdout.rows ?? 0, process.stdout.columns ?? 0] : [0, 0];
  const body: Record<string, unknown> = {
    Hostname: flags.string("hostname") ?? "",
    Domainname: "",
    User: flags.string("user") ?? "",
    AttachStdin: attachStdin,
    AttachStdout: attachStdout,
    AttachStderr: attachStderr,
    ExposedPorts: Object.keys(exposed).length ? exposed : undefined,
    Tty: tty,
    OpenStdin: interactive,
    StdinOnce: interactive && attachStdin,
    Env: envList(flags),
    Cmd: cmd.length ? cmd : null,
    Image: image,
    Volumes: Object.keys(volumes).length ? volumes : {},
    WorkingDir: flags.string("workdir") ?? "",
    Entrypoint: entrypoint === undefined ? null : [entrypoint],
    Labels: labels,
    StopSignal: flags.string("stop-signal"),
    StopTimeout: stopTimeout,
    HostConfig: {
      Binds: binds.length ? binds : null,
      NetworkMode: network,
      PortBindings: bindings,
      RestartPolicy: restartPolicy(flags.string("restart") ?? "no"),
      AutoRemove: flags.bool("rm"),
      CapAdd: flags.list("cap-add").length ? flags.list("cap-add") : null,
      CapDrop: flags.list("cap-drop").length ? flags.list("cap-drop") : null,
      Dns: flags.list("dns"),
      ExtraHosts: flags.list("add-host").length ? flags.list("add-host") : null,
      Privileged: flags.bool("privileged"),
      ReadonlyRootfs: flags.bool("read-only"),
      SecurityOpt: flags.list("security-opt").length ? flags.list("security-opt") : null,
      Tmpfs: Object.keys(tmpfs).length ? tmpfs : undefined,
      ShmSize: shm === undefined ? 0 : parseBytes(shm, "shm-size"),
      ConsoleSize: size,
      Init: flags.has("init") ? flags.bool("init") : null,
      Memory: memory === undefined ? 0 : parseBytes(memory, "memory"),
      MemorySwap: swap === undefined ? 0 : swap === "-1" ? -1 : parseBytes(swap, "memory-swap"),
      NanoCpus: cpus === undefined ? 0 : Math.round(Number(cpus) * 1e9),
      CpuShares: flags.int("cpu-shares") ?? 0,
      PidsLimit: flags.int("pids-limit") ?? null,
      Ulimits: flags.list("ulimit").map(parseUlimit),
      Mounts: flags.list("mount").length ? flags.list("mount").map(parseMount) : undefined,
      LogConfig: { Type: "", Config: {} },
    },
    NetworkingConfig: { EndpointsConfig: { [network]: {} } },
  };
  return { name: flags.string("name"), platform: flags.string("platform"), body };
}
