// A RUN step's network, as Docker's classic builder gives its intermediate container one:
// the build's network mode (the /build `networkmode` query) picks the default bridge
// ("", "default", "bridge"), a user-defined network by name or id, the host's namespace
// ("host") or a namespace with loopback only ("none"). On a bridge network a RUN runs in
// a namespace with an endpoint on it: a veth on the bridge, an address from the network's
// IPAM (and the NAT rules the bridge plugin adds per address), all given back when the
// build ends, whichever way it ends (RunNetworks below: the build's RUNs share them).
//
// The /etc files a RUN sees (hosts, hostname, resolv.conf) are written into a directory
// of their own, `<root>/engine/build-networks/net-<id>`, before anything is attached: a
// daemon killed mid-RUN (or while a finished build's networks are released, which runs
// after its client has the outcome) leaves that directory, and the next start releases
// the namespace's network by the id in its name (releaseRunNetworks).
import { randomBytes } from "node:crypto";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { NetworkMode } from "../../../core/oci/spec.ts";
import type { Backend } from "../backend.ts";
import { badRequest } from "../http.ts";
import type { ContainerFiles } from "../containers/config.ts";
import { writeContainerFiles } from "../containers/rootfs-files.ts";
import { networkManager } from "../networks/index.ts";
import type { NetworkManager } from "../networks/manager.ts";

export interface RunNetwork {
  /** The namespace the run's spec uses. */
  mode: NetworkMode;
  /** The /etc files bound into the run (the host's own are bound for the host's namespace). */
  files?: ContainerFiles;
  /** Gives the namespace back to the build (RunNetworks); safe to repeat. */
  release(): Promise<void>;
}

const filesPrefix = "net-";

/**
 * The /build `networkmode` query, checked before the build starts: Docker's default is
 * the default bridge. A network that does not exist is found only when a RUN needs it, as
 * with Docker's classic builder (a build without RUN steps never looks).
 */
export function buildNetworkMode(query: string | null): string {
  const mode = query ?? "";
  if (mode.startsWith("container:")) throw badRequest(`network mode "${mode}" is not supported for builds: a RUN step cannot join another container's network namespace`);
  if (/[\s/\\]/.test(mode) || mode.startsWith(".")) throw badRequest(`invalid network mode ${JSON.stringify(mode)}`);
  return mode || "default";
}

interface Sandbox {
  /** Names the namespace, the endpoint and the files' directory: the id of the first run in it. */
  id: string;
  mode: NetworkMode;
  files?: ContainerFiles;
  dir?: string;
  /** Set when the sandbox has an endpoint on a network. */
  manager?: NetworkManager;
}

/**
 * A build's RUN namespaces on its network. Attaching one costs a namespace and several
 * plugin execs (a veth, an address, NAT rules: ~100–300 ms on a busy 2-CPU machine), and
 * detaching as much again, so a RUN takes a namespace another RUN of the build has given
 * back, and only one that finds none free (the first, or one in a stage running beside
 * another's RUN) makes one, and a stage that misses the cache with a RUN ahead has one
 * made while the steps before that RUN run (prepare). A RUN cannot change its namespace (no CAP_NET_ADMIN) and
 * leaves no process in it (its pid namespace ends with it), so what a RUN sees is what a
 * fresh one would: the same address as the build's previous RUN, its own hostname.
 * close() releases them all when the build ends.
 */
export class RunNetworks {
  private readonly idle: Sandbox[] = [];
  /** A namespace prepare() is making; it joins `idle` when made. */
  private preparing: Promise<void> | undefined;
  private closed = false;
  private readonly backend: Backend;
  private readonly mode: string;
  /** Where the namespaces' /etc files go (work-dir.ts buildNetworksDir). */
  private readonly filesDir: string;

  constructor(backend: Backend, mode: string, filesDir: string) {
    this.backend = backend;
    this.mode = mode;
    this.filesDir = filesDir;
  }

  /**
   * Starts making a namespace if none is free or being made: a stage that missed the cache
   * with a RUN ahead calls it, so the RUN finds one ready (made while the steps before it
   * ran). A failure is left for the RUN's own acquire to meet and report.
   */
  prepare(): void {
    if (this.closed || this.preparing || this.idle.length > 0) return;
    const id = randomBytes(32).toString("hex");
    this.preparing = this.make(id, id.slice(0, 12)).then(
      (sandbox) => {
        this.preparing = undefined;
        if (this.closed) return this.destroy(sandbox).catch(() => undefined);
        this.idle.push(sandbox);
      },
      () => {
        this.preparing = undefined;
      },
    );
  }

  /** A namespace for run `id` (its hostname the id's first 12 digits); release() gives it back to the build. */
  async acquire(id: string): Promise<RunNetwork> {
    const hostname = id.slice(0, 12);
    let sandbox: Sandbox | undefined;
    while (!sandbox) {
      if (this.closed) throw new Error("the build has ended: no RUN can start");
      const free = this.idle.pop();
      if (free) {
        try {
          await this.rename(free, hostname);
        } catch (err) {
          await this.destroy(free).catch(() => undefined);
          throw err;
        }
        sandbox = free;
      } else if (this.preparing) {
        await this.preparing;
      } else {
        sandbox = await this.make(id, hostname);
      }
    }
    const held = sandbox;
    let returned = false;
    return {
      mode: held.mode,
      ...(held.files ? { files: held.files } : {}),
      release: async () => {
        if (returned) return;
        returned = true;
        if (this.closed) await this.destroy(held);
        else this.idle.push(held);
      },
    };
  }

  /** Releases every namespace given back; one still held is released when it is given back. */
  async close(): Promise<void> {
    this.closed = true;
    await this.preparing;
    let first: unknown;
    for (const sandbox of this.idle.splice(0)) {
      try {
        await this.destroy(sandbox);
      } catch (err) {
        first ??= err;
      }
    }
    if (first) throw first;
  }

  private async make(id: string, hostname: string): Promise<Sandbox> {
    if (this.mode === "host") return { id, mode: { kind: "host" } };
    const dir = join(this.filesDir, `${filesPrefix}${id}`);
    const files = writeContainerFiles(dir, hostname);
    if (this.mode === "none") return { id, mode: { kind: "private" }, files, dir };
    const manager = networkManager(this.backend);
    try {
      return { id, mode: await manager.attachRun(id, this.mode, { hostsPath: files.hosts, hostname }), files, dir, manager };
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private async rename(sandbox: Sandbox, hostname: string): Promise<void> {
    if (!sandbox.dir) return;
    if (!sandbox.manager) {
      writeContainerFiles(sandbox.dir, hostname);
      return;
    }
    // Not bound anywhere between runs: written as new files.
    writeFileSync(sandbox.files!.hostname, `${hostname}\n`);
    await sandbox.manager.renameRun(sandbox.id, hostname);
  }

  private async destroy(sandbox: Sandbox): Promise<void> {
    if (sandbox.manager) await sandbox.manager.release(sandbox.id);
    if (sandbox.dir) rmSync(sandbox.dir, { recursive: true, force: true });
  }
}

/** Releases the networks of the runs a killed daemon left in `filesDir` (their `net-<id>` directories); returns their ids. */
export async function releaseRunNetworks(backend: Backend, filesDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = readdirSync(filesDir).filter((name) => name.startsWith(filesPrefix));
  } catch {
    return [];
  }
  const ids = names.map((name) => name.slice(filesPrefix.length));
  for (const [i, id] of ids.entries()) {
    await networkManager(backend).release(id);
    rmSync(join(filesDir, names[i]!), { recursive: true, force: true });
  }
  return ids;
}
