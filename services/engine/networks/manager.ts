// Networks as the engine runs them: Docker's predefined bridge, host and none; user-defined
// bridge networks (each a CNI bridge configuration list); and containers' endpoints on
// them — a network namespace per container under <state>/netns, CNI ADD before the task
// starts, CNI DEL when it is removed or disconnected, published ports through portmap, and
// /etc/hosts kept listing the peers by name. A network's bridge device exists while it
// has attached containers (the plugin makes it at the first ADD; the last DEL removes it,
// with the shared chains nothing uses any more), so a daemon that is stopped with no
// containers leaves nothing on the host.
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { CniNetwork, type PortMapping } from "../../../core/cni/conflist.ts";
import { bridgeConflist, bridgeExists, createBridge, deleteBridge, forwardDrops, removeUnusedSharedChains } from "../../../core/cni/bridge.ts";
import { withHostLock } from "../../../core/cni/host-lock.ts";
import { createNetns, isNetnsMounted, netnsPath, removeNetns } from "../../../core/cni/netns.ts";
import type { Logger } from "../../../core/log.ts";
import { badRequest, conflict, EngineError, notFoundError, serverError } from "../http.ts";
import type { ContainerRecord } from "../store.ts";
import { hostsContent, rewriteInPlace, type HostEntry } from "./hosts.ts";
import { contains, firstHost, formatSubnet, freePool, hostSubnets, overlaps, parseAddress, parseSubnet, type Subnet } from "./ipv4.ts";
import { bridgeNameOption, NetworkStore, type Endpoint, type NetworkRecord } from "./store.ts";

export const predefined = ["bridge", "host", "none"] as const;

export interface NetworkCreateRequest {
  Name?: string;
  Driver?: string;
  Internal?: boolean;
  Attachable?: boolean;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string; Options?: Record<string, string> | null; Config?: { Subnet?: string; Gateway?: string; IPRange?: string; AuxiliaryAddresses?: unknown }[] | null } | null;
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
  CheckDuplicate?: boolean;
}

export interface EndpointSettings {
  Aliases?: string[] | null;
  IPAMConfig?: { IPv4Address?: string; IPv6Address?: string } | null;
  [key: string]: unknown;
}

/** How a container's task is networked, for its OCI spec. */
export type ContainerNetworkMode = { kind: "private" } | { kind: "host" } | { kind: "join"; path: string };

export interface NetworkingOptions {
  root: string;
  state: string;
  log: Logger;
  /** The firewall plugin's admin chain this engine owns (BERTH_CNI_ADMIN_CHAIN). */
  adminChain: string;
}

const newId = () => randomBytes(32).toString("hex");
/** RFC 3339 with nanoseconds, as Docker writes Created. */
const now = () => new Date().toISOString().replace(/(\.\d+)?Z$/, (_m, frac: string | undefined) => `${(frac ?? ".").padEnd(10, "0")}Z`);

export const networkNotFound = (ref: string) => notFoundError(`network ${ref} not found`);

export class NetworkManager {
  readonly store: NetworkStore;
  private readonly options: NetworkingOptions;
  /** Every change to networks and endpoints runs one at a time (CNI calls, hosts files, bridges). */
  private queue: Promise<unknown> = Promise.resolve();
  /** Networks whose last container left: their device goes when the linger ends, unless one comes back. */
  private readonly lingering = new Map<string, NodeJS.Timeout>();

  constructor(options: NetworkingOptions) {
    this.options = options;
    this.store = new NetworkStore(options.root);
    this.ensurePredefined();
    // Devices a killed engine left lingering: gone now unless a container is attached.
    void this.serial(async () => {
      for (const network of this.store.list()) {
        if (network.Driver === "bridge" && !this.attachedTo(network.Id)) await this.releaseIfUnused(network.Id, true);
      }
    }).catch((err: Error) => options.log.warn({ err: err.message }, "sweeping unused network devices failed"));
  }

  /** Waits for pending work and removes the devices that were lingering. */
  async close(): Promise<void> {
    const pending = [...this.lingering.keys()];
    for (const timer of this.lingering.values()) clearTimeout(timer);
    this.lingering.clear();
    await this.serial(async () => {
      for (const id of pending) await this.releaseIfUnused(id);
    }).catch(() => undefined);
    this.store.close();
  }

  private attachedTo(networkId: string): boolean {
    return this.store.endpointsOfNetwork(networkId).some((e) => e.IPAddress);
  }

  /**
   * A device is kept for a short while after its last container leaves (BERTH_NETWORK_LINGER_MS,
   * default 2 s), so back-to-back `docker run --rm` do not tear down and rebuild the bridge
   * and its rules each time.
   */
  private scheduleRelease(network: NetworkRecord): Promise<void> | void {
    const linger = Number(process.env.BERTH_NETWORK_LINGER_MS ?? 2000);
    if (!(linger > 0)) return this.releaseNetworkDevice(network);
    clearTimeout(this.lingering.get(network.Id));
    const timer = setTimeout(() => {
      this.lingering.delete(network.Id);
      void this.serial(() => this.releaseIfUnused(network.Id)).catch((err: Error) => this.options.log.warn({ network: network.Name, err: err.message }, "removing a network's device failed"));
    }, linger);
    timer.unref();
    this.lingering.set(network.Id, timer);
  }

  private async releaseIfUnused(networkId: string, onlyIfPresent = false): Promise<void> {
    const network = this.store.resolve(networkId);
    if (!network || this.attachedTo(networkId)) return;
    if (onlyIfPresent && !(await bridgeExists(network.Options[bridgeNameOption] ?? ""))) return;
    await this.releaseNetworkDevice(network);
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private get netnsDir() {
    return join(this.options.state, "netns");
  }

  private ipamDir(network: NetworkRecord) {
    return join(this.options.state, "cni", "ipam", cniName(network));
  }

  private ensurePredefined(): void {
    for (const name of predefined) {
      if (this.store.byName(name)) continue;
      const driver = name === "bridge" ? "bridge" : name === "host" ? "host" : "null";
      const record = blankRecord(name, driver);
      if (name === "bridge") {
        const subnet = this.pickPool();
        record.IPAM.Config = [{ Subnet: formatSubnet(subnet), Gateway: firstHost(subnet) }];
        record.Options = {
          [bridgeNameOption]: bridgeNameFor(record.Id),
          "com.docker.network.bridge.default_bridge": "true",
          "com.docker.network.bridge.enable_icc": "true",
          "com.docker.network.bridge.enable_ip_masquerade": "true",
        };
      }
      try {
        this.store.insert(record);
      } catch (err) {
        // another engine process on this root made it first
        if (!(err instanceof EngineError && err.status === 409)) throw err;
      }
    }
  }

  /** A default pool no network of ours and no route on the host uses. */
  private pickPool(except?: string): Subnet {
    const ours = this.store
      .list()
      .filter((n) => n.Id !== except)
      .flatMap((n) => n.IPAM.Config.map((c) => parseSubnet(c.Subnet)));
    const pool = freePool([...ours, ...hostSubnets(this.ourBridges())]);
    if (!pool) throw badRequest("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network");
    return pool;
  }

  private ourBridges(): string[] {
    return this.store.list().flatMap((n) => (n.Options[bridgeNameOption] ? [n.Options[bridgeNameOption]!] : []));
  }

  // ---- the API's verbs ---------------------------------------------------------------

  resolve(ref: string): NetworkRecord {
    const network = this.store.resolve(ref);
    if (!network) throw networkNotFound(ref);
    return network;
  }

  create(request: NetworkCreateRequest): Promise<NetworkRecord> {
    return this.serial(() => {
      const name = request.Name;
      if (typeof name !== "string" || name === "") throw badRequest("network name must not be empty");
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) throw badRequest(`invalid network name ${JSON.stringify(name)}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
      if ((predefined as readonly string[]).includes(name)) throw new EngineError(403, `${name} is a pre-defined network and cannot be created`);
      const driver = request.Driver || "bridge";
      if (driver === "host" || driver === "null") throw new EngineError(403, `only one instance of "${driver}" network is allowed`);
      if (driver !== "bridge") throw notFoundError(`plugin "${driver}" not found`);
      if (request.EnableIPv6) throw badRequest("IPv6 networks are not supported by Berth");
      if (request.IPAM?.Driver && request.IPAM.Driver !== "default") throw notFoundError(`plugin "${request.IPAM.Driver}" not found`);
      if (this.store.byName(name)) throw conflict(`network with name ${name} already exists`);
      const configs = request.IPAM?.Config ?? [];
      if (configs.length > 1) throw badRequest("only one IPv4 subnet per network is supported by Berth");
      const wanted = configs[0];
      if (wanted?.IPRange) throw badRequest("--ip-range is not supported by Berth");
      const record = blankRecord(name, "bridge");
      const options = { ...(request.Options ?? {}) };
      const bridge = options[bridgeNameOption] || bridgeNameFor(record.Id);
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw badRequest(`invalid bridge name ${JSON.stringify(bridge)}: at most 15 letters, digits, '_', '.' or '-'`);
      if (this.ourBridges().includes(bridge)) throw conflict(`bridge ${bridge} is already used by another network`);
      options[bridgeNameOption] = bridge;
      let subnet: Subnet;
      if (wanted?.Subnet) {
        subnet = parseSubnet(wanted.Subnet);
        const taken = [...this.store.list().flatMap((n) => n.IPAM.Config.map((c) => parseSubnet(c.Subnet))), ...hostSubnets(this.ourBridges())];
        if (taken.some((t) => overlaps(t, subnet))) throw badRequest("Pool overlaps with other one on this address space");
      } else {
        if (wanted?.Gateway) throw badRequest("a gateway needs a subnet (--subnet)");
        subnet = this.pickPool();
      }
      let gateway = firstHost(subnet);
      if (wanted?.Gateway) {
        const address = parseAddress(wanted.Gateway);
        if (address === undefined) throw badRequest(`invalid gateway address ${wanted.Gateway}`);
        if (!contains(subnet, address) || address === subnet.base) throw badRequest(`no matching subnet for gateway ${wanted.Gateway}`);
        gateway = wanted.Gateway;
      }
      record.IPAM = { Driver: "default", Options: request.IPAM?.Options ?? {}, Config: [{ Subnet: formatSubnet(subnet), Gateway: gateway }] };
      record.Internal = Boolean(request.Internal);
      record.Attachable = Boolean(request.Attachable);
      record.Options = options;
      record.Labels = request.Labels ?? {};
      this.store.insert(record);
      return record;
    });
  }

  /** Removes a user-defined network; one with attached containers is refused. */
  remove(ref: string): Promise<NetworkRecord> {
    return this.serial(async () => {
      const network = this.resolve(ref);
      if ((predefined as readonly string[]).includes(network.Name)) throw new EngineError(403, `${network.Name} is a pre-defined network and cannot be removed`);
      if (this.store.endpointsOfNetwork(network.Id).some((e) => e.IPAddress)) {
        throw conflict(`error while removing network: network ${network.Name} id ${network.Id} has active endpoints`);
      }
      clearTimeout(this.lingering.get(network.Id));
      this.lingering.delete(network.Id);
      this.store.delete(network.Id);
      await this.releaseNetworkDevice(network);
      return network;
    });
  }

  /** Containers on the network, as `network inspect` shows them. */
  containersOf(network: NetworkRecord): Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }> {
    const out: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }> = {};
    for (const e of this.store.endpointsOfNetwork(network.Id)) {
      if (!e.IPAddress) continue;
      out[e.ContainerID] = { Name: e.Name, EndpointID: e.EndpointID, MacAddress: e.MacAddress, IPv4Address: `${e.IPAddress}/${e.IPPrefixLen}`, IPv6Address: "" };
    }
    return out;
  }

  // ---- containers --------------------------------------------------------------------

  /**
   * At container create: the networks it joins (from NetworkMode and the endpoint
   * configs), recorded as endpoints to attach at start, and the namespace its spec uses.
   * An unknown network is Docker's 404.
   */
  planContainer(
    id: string,
    name: string,
    networkMode: string | undefined,
    endpointsConfig: Record<string, EndpointSettings> | null | undefined,
    files: { hostsPath: string; hostname?: string; extraHosts?: string[] | null },
  ): ContainerNetworkMode {
    for (const entry of files.extraHosts ?? []) {
      const colon = entry.indexOf(":");
      const address = entry.slice(colon + 1);
      if (colon <= 0 || (parseAddress(address) === undefined && address !== "host-gateway")) throw badRequest(`invalid IP address in add-host: "${address}"`);
    }
    const hostsPath = files.hostsPath;
    const mode = !networkMode || networkMode === "default" ? "bridge" : networkMode;
    if (mode === "host") return { kind: "host" };
    if (mode === "none") return { kind: "private" };
    if (mode.startsWith("container:")) throw badRequest("container: network modes are resolved by the containers code");
    const primary = this.resolve(mode);
    if (primary.Driver !== "bridge") return primary.Driver === "host" ? { kind: "host" } : { kind: "private" };
    const configs = endpointsConfig ?? {};
    const joins: { network: NetworkRecord; settings: EndpointSettings }[] = [{ network: primary, settings: configs[mode] ?? configs[primary.Name] ?? configs.default ?? {} }];
    for (const [ref, settings] of Object.entries(configs)) {
      if (ref === "default" || ref === mode || ref === primary.Name || ref === primary.Id) continue;
      const network = this.resolve(ref);
      if (network.Driver !== "bridge") throw badRequest(`container cannot be connected to network ${network.Name} and ${primary.Name} at once`);
      if (!joins.some((j) => j.network.Id === network.Id)) joins.push({ network, settings });
    }
    for (const { network, settings } of joins) {
      this.store.putEndpoint({ ...this.newEndpoint(network, id, name, settings, hostsPath), Hostname: files.hostname || id.slice(0, 12), ExtraHosts: files.extraHosts ?? [] });
    }
    return { kind: "join", path: netnsPath(this.netnsDir, id) };
  }

  private newEndpoint(network: NetworkRecord, id: string, name: string, settings: EndpointSettings, hostsPath: string): Endpoint {
    if (settings.IPAMConfig?.IPv4Address) throw badRequest("static container addresses (--ip) are not supported by Berth");
    const aliases = network.Name === "bridge" ? [] : [...new Set([...(settings.Aliases ?? []), id.slice(0, 12)])];
    return { NetworkID: network.Id, ContainerID: id, EndpointID: "", Name: name.replace(/^\//, ""), Aliases: aliases, IfName: "", IPAddress: "", IPPrefixLen: 0, Gateway: "", MacAddress: "", HostsPath: hostsPath };
  }

  /**
   * Before the container's task starts: its namespace, loopback, and CNI ADD on each of
   * its networks (published ports on the first). Whatever is attached already (a restart)
   * is kept. On failure everything this call attached is undone.
   */
  setUp(record: ContainerRecord): Promise<void> {
    return this.serial(async () => {
      const endpoints = this.store.endpointsOfContainer(record.Id);
      if (endpoints.length === 0) {
        // Its spec joins a namespace only networks make: the network was removed meanwhile.
        const mode = record.HostConfig?.NetworkMode || "default";
        if (!["none", "host"].includes(mode) && !mode.startsWith("container:")) throw networkNotFound(mode === "default" ? "bridge" : mode);
        return;
      }
      const path = await createNetns(this.netnsDir, record.Id);
      const attachedNow: Endpoint[] = [];
      try {
        for (const [index, endpoint] of endpoints.entries()) {
          if (endpoint.IPAddress) continue;
          const ports = index === 0 ? await this.portMappings(record) : [];
          attachedNow.push(await this.attach(record.Id, endpoint, path, ports));
        }
      } catch (err) {
        for (const endpoint of attachedNow) await this.detach(endpoint).catch(() => undefined);
        if (!this.store.endpointsOfContainer(record.Id).some((e) => e.IPAddress)) removeNetns(path);
        throw err;
      }
      this.refreshHosts(endpoints.map((e) => e.NetworkID), record);
    });
  }

  /**
   * A build's RUN step on a network, for as long as the step runs: an endpoint in the
   * run's name (as Docker's classic builder's intermediate container has one), its own
   * namespace, loopback and CNI ADD (nothing published). release(id) undoes it. The host
   * and none networks need nothing made: their mode is returned as it is. An unknown
   * network is Docker's "network X not found".
   */
  attachRun(id: string, networkRef: string, files: { hostsPath: string; hostname: string }): Promise<ContainerNetworkMode> {
    return this.serial(async () => {
      const network = this.resolve(networkRef === "default" ? "bridge" : networkRef);
      if (network.Driver === "host") return { kind: "host" } as const;
      if (network.Driver !== "bridge") return { kind: "private" } as const;
      const endpoint = { ...this.newEndpoint(network, id, "", {}, files.hostsPath), Hostname: files.hostname, ExtraHosts: [] };
      this.store.putEndpoint(endpoint);
      let path: string | undefined;
      // The host's FORWARD rules and the bridge device do not depend on the namespace: both
      // are looked at (execs of iptables and ip) while it is made, not after it.
      const firewall = forwardDrops();
      const device = this.prepareDevice(network);
      firewall.catch(() => undefined); // awaited in attach, unless a step before it failed
      device.catch(() => undefined);
      try {
        path = await createNetns(this.netnsDir, id);
        await this.attach(id, endpoint, path, [], { firewall, device });
      } catch (err) {
        await device.catch(() => undefined); // a bridge it is making is released below, not beside it
        await this.detach(this.store.endpoint(network.Id, id) ?? endpoint).catch(() => undefined);
        this.store.deleteEndpoint(network.Id, id);
        if (path) removeNetns(path);
        // The bridge the attach made for this run alone.
        if (!this.attachedTo(network.Id)) await Promise.resolve(this.scheduleRelease(network)).catch(() => undefined);
        throw err;
      }
      this.refreshHosts([network.Id]);
      return { kind: "join", path } as const;
    });
  }

  /** A run attached by attachRun is now run `hostname` (a build's next RUN in the same namespace): its /etc/hosts says so. */
  renameRun(id: string, hostname: string): Promise<void> {
    return this.serial(() => {
      const endpoints = this.store.endpointsOfContainer(id);
      for (const endpoint of endpoints) this.store.putEndpoint({ ...endpoint, Hostname: hostname });
      this.refreshHosts(endpoints.map((e) => e.NetworkID));
    });
  }

  /** `early`: forwardDrops() and prepareDevice() the caller started (else both here, side by side). */
  private async attach(containerId: string, endpoint: Endpoint, netns: string, ports: PortMapping[], early?: { firewall: Promise<boolean>; device: Promise<void> }): Promise<Endpoint> {
    const before = this.store.resolve(endpoint.NetworkID);
    if (!before) throw networkNotFound(endpoint.NetworkID);
    clearTimeout(this.lingering.get(before.Id));
    this.lingering.delete(before.Id);
    const drops = early?.firewall ?? forwardDrops();
    drops.catch(() => undefined); // awaited below, unless the device fails first
    await (early?.device ?? this.prepareDevice(before));
    // The record as the device left it: making it may have moved the default bridge to
    // another pool (its subnet taken on the host meanwhile), and the CNI config must
    // carry the subnet the bridge has.
    const network = this.store.resolve(endpoint.NetworkID) ?? before;
    const used = this.store.endpointsOfContainer(containerId).filter((e) => e.IfName).map((e) => e.IfName);
    let ifname = "eth0";
    for (let i = 0; used.includes(ifname); i++) ifname = `eth${i}`;
    const sandbox = { containerId, netns, ifname };
    const firewall = await drops;
    const add = () => this.cni(network, ports.length > 0, firewall).add(sandbox, ports.length > 0 ? { portMappings: ports } : {});
    // portmap and firewall create the shared chains (CNI-HOSTPORT-*, CNI-FORWARD) before
    // they add rules to them; removeUnusedSharedChains, by this or another engine, must not
    // delete a chain in between, so both hold the host lock (core/cni/bridge.ts).
    const result = ports.length > 0 || firewall ? await withHostLock(add) : await add();
    const ip = result.ips?.[0];
    const iface = ip?.interface !== undefined ? result.interfaces?.[ip.interface] : result.interfaces?.find((i) => i.sandbox);
    const [address = "", prefix = "0"] = (ip?.address ?? "").split("/");
    const attached: Endpoint = {
      ...endpoint,
      EndpointID: newId(),
      IfName: ifname,
      IPAddress: address,
      IPPrefixLen: Number(prefix),
      Gateway: ip?.gateway ?? "",
      MacAddress: iface?.mac ?? "",
      ...(ports.length > 0 ? { Ports: ports } : {}),
    };
    this.store.putEndpoint(attached);
    return attached;
  }

  /** CNI DEL of one endpoint; the network's device goes with its last attached container. */
  private async detach(endpoint: Endpoint): Promise<void> {
    const network = this.store.resolve(endpoint.NetworkID);
    if (!network || !endpoint.IfName) return;
    const netns = netnsPath(this.netnsDir, endpoint.ContainerID);
    await this.cni(network).del({ containerId: endpoint.ContainerID, netns, ifname: endpoint.IfName });
    const { Ports: _ports, ...rest } = endpoint;
    void _ports;
    this.store.putEndpoint({ ...rest, EndpointID: "", IfName: "", IPAddress: "", IPPrefixLen: 0, Gateway: "", MacAddress: "" });
    if (!this.attachedTo(network.Id)) await this.scheduleRelease(network);
  }

  /**
   * When the container is removed: CNI DEL everywhere, its namespace unmounted, its
   * endpoint rows gone, its peers' /etc/hosts rewritten. Safe to repeat.
   */
  release(containerId: string): Promise<void> {
    return this.serial(async () => {
      const endpoints = this.store.endpointsOfContainer(containerId);
      let first: unknown;
      for (const endpoint of endpoints.reverse()) {
        try {
          await this.detach(endpoint);
        } catch (err) {
          first ??= err;
          this.options.log.warn({ id: containerId, network: endpoint.NetworkID, err: (err as Error).message }, "CNI DEL failed");
        }
        this.store.deleteEndpoint(endpoint.NetworkID, containerId);
      }
      removeNetns(netnsPath(this.netnsDir, containerId));
      this.refreshHosts(endpoints.map((e) => e.NetworkID));
      if (first) throw first;
    });
  }

  /**
   * When the container's task has ended (and it is not restarting): its addresses, veths,
   * published ports and namespace are given back, as Docker does; its endpoints stay
   * configured and attach again at the next start.
   */
  stopped(containerId: string): Promise<void> {
    return this.serial(async () => {
      const endpoints = this.store.endpointsOfContainer(containerId);
      let first: unknown;
      for (const endpoint of [...endpoints].reverse()) {
        try {
          await this.detach(endpoint);
        } catch (err) {
          first ??= err;
        }
      }
      if (!this.store.endpointsOfContainer(containerId).some((e) => e.IPAddress)) removeNetns(netnsPath(this.netnsDir, containerId));
      this.refreshHosts(endpoints.map((e) => e.NetworkID));
      if (first) throw first;
    });
  }

  /** `network connect`: recorded for a stopped container, attached at once for a running one. */
  connect(networkRef: string, record: ContainerRecord, settings: EndpointSettings, hostsPath: string): Promise<void> {
    return this.serial(async () => {
      const network = this.resolve(networkRef);
      if (network.Driver !== "bridge") throw new EngineError(403, `container cannot be disconnected from host network or connected to ${network.Name === "host" ? "host" : "a null"} network`);
      const current = this.store.endpointsOfContainer(record.Id);
      const mode = record.HostConfig?.NetworkMode ?? "default";
      if (mode === "host" || mode === "none" || mode.startsWith("container:")) throw new EngineError(403, `container sharing network namespace with another container or host cannot be connected to any other network`);
      if (current.some((e) => e.NetworkID === network.Id)) throw new EngineError(403, `endpoint with name ${record.Name.replace(/^\//, "")} already exists in network ${network.Name}`);
      const endpoint = { ...this.newEndpoint(network, record.Id, record.Name, settings, hostsPath), Hostname: record.Config?.Hostname || record.Id.slice(0, 12), ExtraHosts: (record.HostConfig?.ExtraHosts as string[] | null | undefined) ?? [] };
      this.store.putEndpoint(endpoint);
      const path = netnsPath(this.netnsDir, record.Id);
      if (record.State?.Running && isNetnsMounted(path)) {
        try {
          await this.attach(record.Id, endpoint, path, []);
        } catch (err) {
          this.store.deleteEndpoint(network.Id, record.Id);
          throw err;
        }
        this.refreshHosts([...current.map((e) => e.NetworkID), network.Id], record);
      }
    });
  }

  disconnect(networkRef: string, record: ContainerRecord): Promise<void> {
    return this.serial(async () => {
      const network = this.resolve(networkRef);
      const endpoint = this.store.endpoint(network.Id, record.Id);
      if (!endpoint) throw new EngineError(403, `container ${record.Id} is not connected to network ${network.Name}`);
      await this.detach(endpoint);
      this.store.deleteEndpoint(network.Id, record.Id);
      this.refreshHosts([network.Id, ...this.store.endpointsOfContainer(record.Id).map((e) => e.NetworkID)]);
    });
  }

  /** NetworkSettings for container inspect and list. */
  /**
   * `known`: the container's endpoints and a network lookup when the caller already has
   * them (a list fetches every endpoint in one query and looks each network up once).
   */
  settingsOf(record: ContainerRecord, known?: { endpoints: Endpoint[]; network: (id: string) => NetworkRecord | undefined }): Record<string, unknown> {
    const endpoints = known?.endpoints ?? this.store.endpointsOfContainer(record.Id);
    const networkOf = known?.network ?? ((id: string) => this.store.resolve(id));
    const networks: Record<string, unknown> = {};
    for (const e of endpoints) {
      const network = networkOf(e.NetworkID);
      if (!network) continue;
      networks[network.Name] = {
        IPAMConfig: null, Links: null, Aliases: e.Aliases.length > 0 ? e.Aliases : null, NetworkID: network.Id, EndpointID: e.EndpointID, Gateway: e.Gateway,
        IPAddress: e.IPAddress, IPPrefixLen: e.IPPrefixLen, IPv6Gateway: "", GlobalIPv6Address: "", GlobalIPv6PrefixLen: 0, MacAddress: e.MacAddress, DriverOpts: null,
      };
    }
    const first = endpoints.find((e) => e.IPAddress);
    const ports: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
    for (const port of Object.keys(record.Config?.ExposedPorts ?? {})) ports[port] = null;
    for (const m of endpoints[0]?.Ports ?? []) {
      const key = `${m.containerPort}/${m.protocol}`;
      (ports[key] ??= []).push({ HostIp: m.hostIP || "0.0.0.0", HostPort: String(m.hostPort) });
    }
    const onDefault = endpoints.find((e) => networkOf(e.NetworkID)?.Name === "bridge" && e.IPAddress);
    return {
      Bridge: "", SandboxID: first ? record.Id : "", HairpinMode: false, LinkLocalIPv6Address: "", LinkLocalIPv6PrefixLen: 0, Ports: ports,
      SandboxKey: first ? netnsPath(this.netnsDir, record.Id) : "", SecondaryIPAddresses: null, SecondaryIPv6Addresses: null,
      EndpointID: onDefault?.EndpointID ?? "", Gateway: onDefault?.Gateway ?? "", GlobalIPv6Address: "", GlobalIPv6PrefixLen: 0,
      IPAddress: onDefault?.IPAddress ?? "", IPPrefixLen: onDefault?.IPPrefixLen ?? 0, IPv6Gateway: "", MacAddress: onDefault?.MacAddress ?? "",
      Networks: networks,
    };
  }

  // ---- inner workings ----------------------------------------------------------------

  /** The network's CNI list; portmap only for a container that publishes ports (DEL runs the list ADD ran). */
  private cni(network: NetworkRecord, portMappings = true, firewall = true): CniNetwork {
    const config = network.IPAM.Config[0];
    if (!config) throw serverError(`network ${network.Name} has no subnet`);
    return new CniNetwork(
      bridgeConflist({
        name: cniName(network),
        bridge: network.Options[bridgeNameOption] ?? bridgeNameFor(network.Id),
        subnet: config.Subnet,
        gateway: config.Gateway,
        ipamDataDir: join(this.options.state, "cni", "ipam"),
        external: !network.Internal,
        adminChain: this.options.adminChain,
        portMappings,
        firewall,
      }),
      join(this.options.state, "cni", "results"),
    );
  }

  /**
   * Before a network's first container: the default bridge moves to another pool if its
   * subnet has been taken on the host meanwhile (it has no containers, so nothing notices);
   * a user-defined subnet that collides is an error.
   */
  private async prepareDevice(network: NetworkRecord): Promise<void> {
    const bridge = network.Options[bridgeNameOption]!;
    if (await bridgeExists(bridge)) return;
    // Checking the routes and taking the subnet must be one step for every engine on the
    // host: the bridge gets its address (and so its route) before the lock is let go.
    await withHostLock(async () => {
      const subnet = parseSubnet(network.IPAM.Config[0]!.Subnet);
      if (hostSubnets(this.ourBridges()).some((s) => overlaps(s, subnet))) {
        if (network.Name !== "bridge") throw badRequest(`the subnet ${formatSubnet(subnet)} of network ${network.Name} is in use on this host`);
        const pool = this.pickPool(network.Id);
        network.IPAM.Config = [{ Subnet: formatSubnet(pool), Gateway: firstHost(pool) }];
        this.store.update(network);
      }
      const config = network.IPAM.Config[0]!;
      await createBridge(bridge, `${config.Gateway}/${config.Subnet.split("/")[1]}`);
    });
  }

  private async releaseNetworkDevice(network: NetworkRecord): Promise<void> {
    const bridge = network.Options[bridgeNameOption];
    if (bridge) await deleteBridge(bridge);
    rmSync(this.ipamDir(network), { recursive: true, force: true });
    await removeUnusedSharedChains([this.options.adminChain]).catch((err: Error) => this.options.log.warn({ err: err.message }, "removing unused CNI chains failed"));
  }

  /** Host ports for the container's PortBindings (and -P), each checked free. */
  private async portMappings(record: ContainerRecord): Promise<PortMapping[]> {
    const host = record.HostConfig ?? {};
    const bindings: Record<string, { HostIp?: string; HostPort?: string }[] | null> = { ...((host.PortBindings as Record<string, { HostIp?: string; HostPort?: string }[]> | undefined) ?? {}) };
    if (host.PublishAllPorts) for (const port of Object.keys(record.Config?.ExposedPorts ?? {})) bindings[port] ??= [{ HostIp: "", HostPort: "" }];
    const mappings: PortMapping[] = [];
    for (const [key, list] of Object.entries(bindings)) {
      const [portText = "", protoText = "tcp"] = key.split("/");
      const containerPort = Number(portText);
      const protocol = protoText.toLowerCase();
      if (!Number.isInteger(containerPort) || containerPort < 1 || containerPort > 65535) throw badRequest(`invalid port specification: "${key}"`);
      if (protocol !== "tcp" && protocol !== "udp") throw badRequest(`invalid proto: ${protoText}`);
      for (const binding of list ?? [{}]) {
        const hostIP = binding.HostIp ?? "";
        if (hostIP && parseAddress(hostIP) === undefined) throw badRequest(`invalid IP address: ${hostIP}`);
        let hostPort = binding.HostPort ? Number(binding.HostPort) : 0;
        if (!Number.isInteger(hostPort) || hostPort < 0 || hostPort > 65535) throw badRequest(`invalid hostPort: ${binding.HostPort}`);
        const taken = this.publishedPorts();
        if (hostPort === 0) hostPort = await ephemeralPort(protocol, hostIP, taken);
        else if (taken.has(`${protocol}:${hostPort}`) || !(await portFree(protocol, hostIP, hostPort))) {
          throw serverError(`driver failed programming external connectivity on endpoint ${record.Name.replace(/^\//, "")} (${record.Id}): Bind for ${hostIP || "0.0.0.0"}:${hostPort} failed: port is already allocated`);
        }
        mappings.push({ hostPort, containerPort, protocol, ...(hostIP ? { hostIP } : {}) });
      }
    }
    return mappings;
  }

  private publishedPorts(): Set<string> {
    const taken = new Set<string>();
    for (const network of this.store.list()) {
      for (const e of this.store.endpointsOfNetwork(network.Id)) {
        for (const m of e.Ports ?? []) taken.add(`${m.protocol}:${m.hostPort}`);
      }
    }
    return taken;
  }

  /** Rewrites /etc/hosts of every attached container on these networks (and of `also`, which may have none). */
  private refreshHosts(networkIds: readonly string[], also?: ContainerRecord): void {
    const containers = new Map<string, Endpoint[]>();
    const add = (id: string) => {
      if (!containers.has(id)) containers.set(id, this.store.endpointsOfContainer(id));
    };
    for (const id of new Set(networkIds)) for (const e of this.store.endpointsOfNetwork(id)) if (e.IPAddress) add(e.ContainerID);
    if (also) add(also.Id);
    for (const [id, own] of containers) {
      const attached = own.filter((e) => e.IPAddress);
      const hostsPath = own[0]?.HostsPath;
      if (!hostsPath) continue;
      const hostname = own[0]?.Hostname || id.slice(0, 12);
      const entries: HostEntry[] = [];
      for (const extra of own[0]?.ExtraHosts ?? []) {
        const colon = extra.indexOf(":");
        const address = extra.slice(colon + 1) === "host-gateway" ? (attached[0]?.Gateway ?? "") : extra.slice(colon + 1);
        entries.push({ address, names: [extra.slice(0, colon)] });
      }
      if (attached[0]) entries.push({ address: attached[0].IPAddress, names: [hostname] });
      for (const mine of attached) {
        const network = this.store.resolve(mine.NetworkID);
        // Docker's default bridge resolves no names; user-defined networks do.
        if (!network || network.Name === "bridge") continue;
        for (const peer of this.store.endpointsOfNetwork(network.Id)) {
          if (!peer.IPAddress || peer.ContainerID === id) continue;
          entries.push({ address: peer.IPAddress, names: [peer.Name, ...peer.Aliases] });
        }
      }
      rewriteInPlace(hostsPath, hostsContent(entries));
    }
  }
}

function blankRecord(name: string, driver: NetworkRecord["Driver"]): NetworkRecord {
  return {
    Name: name, Id: newId(), Created: now(), Scope: "local", Driver: driver, EnableIPv6: false,
    IPAM: { Driver: "default", Options: null, Config: [] }, Internal: false, Attachable: false, Ingress: false,
    ConfigFrom: { Network: "" }, ConfigOnly: false, Options: {}, Labels: {},
  };
}

/** Docker's naming for a user-defined network's bridge: br- and the id's first 12 digits (15 characters, the kernel's limit). */
export const bridgeNameFor = (id: string) => `br-${id.slice(0, 12)}`;
const cniName = (network: NetworkRecord) => `berth-${network.Id.slice(0, 12)}`;

function portFree(protocol: string, hostIP: string, port: number): Promise<boolean> {
  if (protocol === "udp") return Promise.resolve(true);
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: hostIP || "0.0.0.0", exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A free port from the kernel's ephemeral range (Docker picks from 32768-60999 too). */
async function ephemeralPort(protocol: string, hostIP: string, taken: Set<string>): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 32768 + Math.floor(Math.random() * (60999 - 32768));
    if (!taken.has(`${protocol}:${port}`) && (await portFree(protocol, hostIP, port))) return port;
  }
  throw serverError("no free host port to publish on");
}
