// The configuration list of a bridge network, as Berth runs it: the bridge plugin (a Linux
// bridge, a veth per container, host-local addresses, optional outbound NAT), portmap
// (published ports, from the host's addresses and 127.0.0.1) and firewall (lets the
// network's traffic through a FORWARD chain whose policy drops). Plus what the plugins
// leave behind on purpose, removed here when the last user has gone: the bridge device
// and portmap's and firewall's top-level chains.
import type { NetworkConfigList } from "./conflist.ts";
import { withHostLock } from "./host-lock.ts";
import { execChecked } from "../../native/spawn.ts";

/** Through posix_spawn: each of these ran while a container or a build RUN started, and a fork of the engine blocked its event loop for ms. */
const run = execChecked;

export interface BridgeNetwork {
  /** The CNI network's name: keys the cached results and the plugins' rule comments. */
  name: string;
  /** The Linux bridge device (at most 15 characters). */
  bridge: string;
  subnet: string;
  gateway?: string;
  /** host-local's lease directory (one per network, under the daemon's state). */
  ipamDataDir: string;
  /** Outbound NAT and a default route: off for internal networks. */
  external: boolean;
  /** The firewall plugin's admin chain (CNI-ADMIN by default). */
  adminChain?: string;
  /** Whether portmap runs (default true): a container that publishes nothing saves its two execs. */
  portMappings?: boolean;
  /** Whether the firewall plugin runs (default true): only needed where FORWARD drops (see forwardDrops). */
  firewall?: boolean;
}

export function bridgeConflist(network: BridgeNetwork): NetworkConfigList {
  const range: Record<string, string> = { subnet: network.subnet };
  if (network.gateway) range.gateway = network.gateway;
  return {
    name: network.name,
    plugins: [
      {
        type: "bridge",
        bridge: network.bridge,
        isGateway: true,
        ipMasq: network.external,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[range]],
          routes: network.external ? [{ dst: "0.0.0.0/0" }] : [],
          dataDir: network.ipamDataDir,
        },
      },
      ...(network.portMappings === false ? [] : [{ type: "portmap", capabilities: { portMappings: true }, snat: true }]),
      ...(network.firewall === false ? [] : [{ type: "firewall", backend: "iptables", ...(network.adminChain ? { iptablesAdminChainName: network.adminChain } : {}) }]),
    ],
  };
}

/**
 * Whether the filter table's FORWARD chain may drop a container's traffic (a DROP policy,
 * as a host running dockerd has, or a DROP/REJECT rule): only then do containers need
 * the firewall plugin's accept rules. With br_netfilter on, even traffic between two
 * containers on one bridge passes FORWARD.
 */
export async function forwardDrops(): Promise<boolean> {
  const { stdout } = await run("iptables", ["-w", "-S", "FORWARD"]);
  const lines = stdout.split("\n");
  return !lines.includes("-P FORWARD ACCEPT") || lines.some((l) => /-j (DROP|REJECT)\b/.test(l));
}

/**
 * Makes the bridge with its gateway address and brings it up (the bridge plugin then uses
 * it as it is). Done by the engine rather than left to the first ADD, so the subnet's
 * route exists from a moment it controls; a failure part way deletes the device.
 */
export async function createBridge(bridge: string, gatewayCidr: string): Promise<void> {
  try {
    await run("ip", ["link", "add", "name", bridge, "type", "bridge"]);
    await run("ip", ["addr", "add", gatewayCidr, "dev", bridge]);
    await run("ip", ["link", "set", "dev", bridge, "up"]);
  } catch (err) {
    await deleteBridge(bridge).catch(() => undefined);
    throw new Error(`cannot create bridge ${bridge}: ${String((err as { stderr?: string }).stderr ?? "").trim() || (err as Error).message}`);
  }
}

/** Deletes the bridge device; a missing one is fine. */
export async function deleteBridge(bridge: string): Promise<void> {
  try {
    await run("ip", ["link", "del", "dev", bridge, "type", "bridge"]);
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? "");
    if (/Cannot find device|does not exist/.test(stderr)) return;
    throw new Error(`cannot delete bridge ${bridge}: ${stderr.trim() || (err as Error).message}`);
  }
}

export async function bridgeExists(bridge: string): Promise<boolean> {
  try {
    await run("ip", ["link", "show", "dev", bridge]);
    return true;
  } catch {
    return false;
  }
}

/** Chains the plugins create once and keep for every container. */
const natChains = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"] as const;

async function iptablesSave(table: string): Promise<string[]> {
  const { stdout } = await run("iptables-save", ["-t", table]);
  return stdout.split("\n");
}

/** Applies `ops` in one transaction (atomic with the nf_tables backend); false when it was refused. */
async function iptablesTransaction(table: string, ops: string[]): Promise<boolean> {
  return execChecked("iptables-restore", ["-w", "--noflush"], { input: [`*${table}`, ...ops, "COMMIT", ""].join("\n") }).then(
    () => true,
    () => false,
  );
}

const deleting = (rule: string) => rule.replace(/^-A /, "-D ");

/**
 * Removes the plugins' shared chains once no container uses them. Rules are deleted one
 * by one, never flushed, and the chain deleted in the same transaction: if another engine
 * on this host added a rule meanwhile, the chain's delete fails and the whole transaction
 * with it, so a chain in use is never unhooked. `ownAdminChains`: firewall admin chains
 * only this caller uses, removed (when empty of the admin's rules) with their jump.
 * Under the host lock: portmap and firewall create a shared chain before they add their
 * rules to it, and an ADD that publishes ports holds the same lock, so a chain is never
 * deleted between its creation and its first rule.
 */
export function removeUnusedSharedChains(ownAdminChains: readonly string[] = []): Promise<void> {
  return withHostLock(() => removeUnusedSharedChainsLocked(ownAdminChains));
}

async function removeUnusedSharedChainsLocked(ownAdminChains: readonly string[]): Promise<void> {
  const nat = await iptablesSave("nat");
  const containersPublishing = nat.some((l) => l.startsWith("-A CNI-HOSTPORT-DNAT ") || l.startsWith(":CNI-DN-"));
  if (!containersPublishing) {
    for (const chain of natChains) {
      if (!nat.some((l) => l.startsWith(`:${chain} `))) continue;
      const rules = nat.filter((l) => l.startsWith(`-A ${chain} `) || (l.startsWith("-A ") && l.endsWith(`-j ${chain}`)));
      await iptablesTransaction("nat", [...rules.map(deleting), `-X ${chain}`]);
    }
  }
  let filter = await iptablesSave("filter");
  const forward = filter.filter((l) => l.startsWith("-A CNI-FORWARD "));
  // The firewall plugin's per-container rules accept; the rest are jumps to admin chains.
  if (filter.some((l) => l.startsWith(":CNI-FORWARD ")) && !forward.some((l) => l.endsWith("-j ACCEPT"))) {
    const jumps = filter.filter((l) => l.startsWith("-A ") && l.endsWith("-j CNI-FORWARD"));
    await iptablesTransaction("filter", [...jumps.map(deleting), ...forward.map(deleting), "-X CNI-FORWARD"]);
    filter = await iptablesSave("filter");
  }
  for (const admin of ownAdminChains) {
    if (!filter.some((l) => l.startsWith(`:${admin} `))) continue;
    const jumps = filter.filter((l) => l.startsWith("-A ") && l.endsWith(`-j ${admin}`));
    await iptablesTransaction("filter", [...jumps.map(deleting), `-X ${admin}`]);
  }
}
