// GET /info: what `docker info` prints and what compose and testcontainers read first
// (OSType, Architecture, NCPU, MemTotal, ServerVersion, IndexServerAddress, Runtimes).
// Container counts come from the engine's records; the host facts from the kernel.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { availableParallelism, hostname, machine, release, totalmem } from "node:os";
import type { Backend } from "../backend.ts";
import { imageCatalog } from "../images/catalog.ts";

/** PRETTY_NAME and VERSION_ID of /etc/os-release ("" when absent). */
function osRelease(): { name: string; version: string } {
  let text = "";
  try {
    text = readFileSync("/etc/os-release", "utf8");
  } catch {
    return { name: "Linux", version: "" };
  }
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(text)?.[1]?.replace(/^"|"$/g, "");
  return { name: value("PRETTY_NAME") || "Linux", version: value("VERSION_ID") || "" };
}

export function cgroupVersion(): "1" | "2" {
  return existsSync("/sys/fs/cgroup/cgroup.controllers") ? "2" : "1";
}

function ipv4Forwarding(): boolean {
  try {
    return readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim() === "1";
  } catch {
    return false;
  }
}

function openFiles(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}

/** A stable ID per engine root (Docker keeps a random one in a file; a hash of the root is as stable and needs no file). */
function engineId(root: string): string {
  const hex = createHash("sha256").update(`berth-engine:${root}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Go's time.RFC3339Nano in local time, as Docker prints SystemTime. */
function systemTime(now = new Date()): string {
  const offset = -now.getTimezoneOffset();
  const local = new Date(now.getTime() + offset * 60_000).toISOString().replace("Z", "");
  const sign = offset >= 0 ? "+" : "-";
  const zone = offset === 0 ? "Z" : `${sign}${String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0")}:${String(Math.abs(offset) % 60).padStart(2, "0")}`;
  return `${local}${zone}`;
}

export async function systemInfo(backend: Backend): Promise<Record<string, unknown>> {
  const containers = backend.store.list();
  const running = containers.filter((c) => c.State.Running && !c.State.Paused).length;
  const paused = containers.filter((c) => c.State.Paused).length;
  const images = await imageCatalog(backend).list();
  const os = osRelease();
  const v2 = cgroupVersion() === "2";
  return {
    ID: engineId(backend.options.root),
    Containers: containers.length,
    ContainersRunning: running,
    ContainersPaused: paused,
    ContainersStopped: containers.length - running - paused,
    Images: images.length,
    Driver: "overlayfs",
    DriverStatus: [["Backing Filesystem", "overlayfs snapshots"]],
    Plugins: { Volume: ["local"], Network: ["host", "null"], Authorization: null, Log: ["json-file"] },
    MemoryLimit: true,
    SwapLimit: v2,
    KernelMemory: false,
    KernelMemoryTCP: false,
    CpuCfsPeriod: true,
    CpuCfsQuota: true,
    CPUShares: true,
    CPUSet: true,
    PidsLimit: true,
    IPv4Forwarding: ipv4Forwarding(),
    BridgeNfIptables: false,
    BridgeNfIp6tables: false,
    Debug: false,
    NFd: openFiles(),
    OomKillDisable: !v2,
    NGoroutines: 0,
    SystemTime: systemTime(),
    LoggingDriver: "json-file",
    CgroupDriver: "cgroupfs",
    CgroupVersion: cgroupVersion(),
    NEventsListener: 0,
    KernelVersion: release(),
    OperatingSystem: os.name,
    OSVersion: os.version,
    OSType: "linux",
    // Docker shows uname's machine here (x86_64), not Go's arch name.
    Architecture: machine(),
    IndexServerAddress: "https://index.docker.io/v1/",
    RegistryConfig: {
      AllowNondistributableArtifactsCIDRs: [],
      AllowNondistributableArtifactsHostnames: [],
      InsecureRegistryCIDRs: ["127.0.0.0/8"],
      IndexConfigs: { "docker.io": { Name: "docker.io", Mirrors: [], Secure: true, Official: true } },
      Mirrors: [],
    },
    NCPU: availableParallelism(),
    MemTotal: totalmem(),
    GenericResources: null,
    DockerRootDir: backend.options.root,
    HttpProxy: process.env.HTTP_PROXY ?? process.env.http_proxy ?? "",
    HttpsProxy: process.env.HTTPS_PROXY ?? process.env.https_proxy ?? "",
    NoProxy: process.env.NO_PROXY ?? process.env.no_proxy ?? "",
    Name: hostname(),
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: backend.options.serverVersion,
    Runtimes: { runc: { path: "runc" } },
    DefaultRuntime: "runc",
    Swarm: { NodeID: "", NodeAddr: "", LocalNodeState: "inactive", ControlAvailable: false, Error: "", RemoteManagers: null },
    LiveRestoreEnabled: true,
    Isolation: "",
    InitBinary: "",
    ContainerdCommit: { ID: "berth", Expected: "berth" },
    RuncCommit: { ID: "", Expected: "" },
    InitCommit: { ID: "", Expected: "" },
    SecurityOptions: v2 ? ["name=cgroupns"] : [],
    Warnings: [],
  };
}
