// A CNI network configuration list run as libcni runs one: ADD calls each plugin in order,
// handing each the previous one's result; DEL calls them in reverse with the cached ADD
// result; CHECK in order with it. Runtime values (port mappings) go only to plugins that
// declare the capability. The ADD result is cached on disk (crash-safely) so DEL and
// CHECK work after a daemon restart.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { makePrivateDir, writePrivateFile } from "../private-files.ts";
import { alreadyExists, invalidArgument } from "../errors.ts";
import { cniPluginDirs, cniVersion, execPlugin, type CniSandbox } from "./plugin.ts";

export interface PluginConfig {
  type: string;
  capabilities?: Record<string, boolean>;
  [key: string]: unknown;
}

export interface NetworkConfigList {
  cniVersion?: string;
  name: string;
  plugins: PluginConfig[];
}

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp";
  /** Empty or absent: every host address. */
  hostIP?: string;
}

export interface RuntimeConfig {
  portMappings?: PortMapping[];
}

/** A CNI 1.0 result: what ADD made. */
export interface CniResult {
  cniVersion: string;
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[] };
}

interface Cached {
  result: CniResult;
  runtimeConfig: RuntimeConfig;
  /** The list ADD ran: DEL must undo exactly those plugins, whatever the network's list is now. */
  list?: NetworkConfigList;
}

export class CniNetwork {
  readonly list: NetworkConfigList;
  private readonly cacheDir: string;
  private readonly pluginDirs: string[];

  constructor(list: NetworkConfigList, cacheDir: string, pluginDirs = cniPluginDirs()) {
    if (!/^[A-Za-z0-9_.-]+$/.test(list.name)) throw invalidArgument(`invalid CNI network name ${JSON.stringify(list.name)}`);
    if (list.plugins.length === 0) throw invalidArgument(`CNI network ${list.name} has no plugins`);
    this.list = list;
    this.cacheDir = cacheDir;
    this.pluginDirs = pluginDirs;
  }

  private cacheFile(sandbox: CniSandbox): string {
    return join(this.cacheDir, `${this.list.name}-${sandbox.containerId}-${sandbox.ifname}.json`);
  }

  private pluginConfig(plugin: PluginConfig, runtimeConfig: RuntimeConfig, prevResult: CniResult | undefined, list = this.list): PluginConfig {
    const config: PluginConfig = { ...plugin, cniVersion: list.cniVersion ?? cniVersion, name: list.name };
    delete config.capabilities;
    const runtime: Record<string, unknown> = {};
    for (const [capability, on] of Object.entries(plugin.capabilities ?? {})) {
      const value = (runtimeConfig as Record<string, unknown>)[capability];
      if (on && value !== undefined) runtime[capability] = value;
    }
    if (Object.keys(runtime).length > 0) config.runtimeConfig = runtime;
    if (prevResult) config.prevResult = prevResult;
    return config;
  }

  /** The cached ADD result of this sandbox, if it was added. */
  cached(sandbox: CniSandbox): CniResult | undefined {
    return this.readCache(sandbox)?.result;
  }

  private readCache(sandbox: CniSandbox): Cached | undefined {
    const file = this.cacheFile(sandbox);
    if (!existsSync(file)) return undefined;
    return JSON.parse(readFileSync(file, "utf8")) as Cached;
  }

  /**
   * Adds the sandbox to the network. A failure part way deletes what the earlier plugins
   * made, so nothing is left half-configured.
   */
  async add(sandbox: CniSandbox, runtimeConfig: RuntimeConfig = {}): Promise<CniResult> {
    // A second ADD would fail in the bridge plugin, and the clean-up below would then take
    // the first one's interface away.
    if (existsSync(this.cacheFile(sandbox))) throw alreadyExists(`container ${sandbox.containerId} is already attached to CNI network ${this.list.name} as ${sandbox.ifname}`);
    let prev: CniResult | undefined;
    try {
      for (const plugin of this.list.plugins) {
        prev = (await execPlugin("ADD", this.pluginConfig(plugin, runtimeConfig, prev), sandbox, this.pluginDirs)) as CniResult;
      }
    } catch (err) {
      await this.runDel(sandbox, runtimeConfig, prev).catch(() => {});
      throw err;
    }
    const result = prev!;
    makePrivateDir(this.cacheDir);
    writePrivateFile(this.cacheFile(sandbox), JSON.stringify({ result, runtimeConfig, list: this.list } satisfies Cached));
    return result;
  }

  /**
   * Checks that what ADD made is still in place (a plugin's error says what is not).
   * `skip`: plugin types whose CHECK is known to be wrong (portmap 1.1.1 fails on IPv6
   * chains it never made).
   */
  async check(sandbox: CniSandbox, skip: readonly string[] = []): Promise<void> {
    const cached = this.readCache(sandbox);
    if (!cached) throw invalidArgument(`container ${sandbox.containerId} was not added to CNI network ${this.list.name}`);
    const list = cached.list ?? this.list;
    for (const plugin of list.plugins.filter((p) => !skip.includes(p.type))) {
      await execPlugin("CHECK", this.pluginConfig(plugin, cached.runtimeConfig, cached.result, list), sandbox, this.pluginDirs);
    }
  }

  /**
   * Removes the sandbox from the network: every plugin runs even if one fails (the first
   * error is thrown after), so a half-gone sandbox still loses its address and rules.
   * Deleting what is not there succeeds, as CNI requires.
   */
  async del(sandbox: CniSandbox): Promise<void> {
    const cached = this.readCache(sandbox);
    await this.runDel(sandbox, cached?.runtimeConfig ?? {}, cached?.result, cached?.list);
    rmSync(this.cacheFile(sandbox), { force: true });
  }

  private async runDel(sandbox: CniSandbox, runtimeConfig: RuntimeConfig, prevResult: CniResult | undefined, list = this.list): Promise<void> {
    let first: unknown;
    for (const plugin of [...list.plugins].reverse()) {
      try {
        await execPlugin("DEL", this.pluginConfig(plugin, runtimeConfig, prevResult, list), sandbox, this.pluginDirs);
      } catch (err) {
        first ??= err;
      }
    }
    if (first) throw first;
  }
}

