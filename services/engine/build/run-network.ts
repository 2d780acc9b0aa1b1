// A RUN step's network, as Docker's classic builder gives its intermediate container one:
// the build's network mode (the /build `networkmode` query) picks the default bridge
// ("", "default", "bridge"), a user-defined network by name or id, the host's namespace
// ("host") or a namespace with loopback only ("none"). On a bridge network the run gets
// an endpoint for as long as the step runs: its own namespace, a veth on the bridge, an
// address from the network's IPAM (and the NAT rules the bridge plugin adds per address),
// all given back when the step ends, whichever way it ends.
//
// The /etc files the run sees (hosts, hostname, resolv.conf) are written into a directory
// of their own in the build's directory, `net-<run id>`, before anything is attached: a
// daemon killed mid-RUN leaves that directory, and the build's recovery releases the
// run's network by the id in its name (releaseRunNetworks).
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { NetworkMode } from "../../../core/oci/spec.ts";
import type { Backend } from "../backend.ts";
import { badRequest } from "../http.ts";
import type { ContainerFiles } from "../containers/config.ts";
import { writeContainerFiles } from "../containers/rootfs-files.ts";
import { networkManager } from "../networks/index.ts";

export interface RunNetwork {
  /** The namespace the run's spec uses. */
  mode: NetworkMode;
  /** The /etc files bound into the run (the host's own are bound for the host's namespace). */
  files?: ContainerFiles;
  /** Gives back what the run was given: endpoint, address, veth, namespace, files. Safe to repeat. */
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

/** Sets up run `id`'s network in `mode`, its /etc files under `scratchDir`. */
export async function runNetwork(backend: Backend, mode: string, id: string, scratchDir: string): Promise<RunNetwork> {
  if (mode === "host") return { mode: { kind: "host" }, release: async () => undefined };
  const dir = join(scratchDir, `${filesPrefix}${id}`);
  const hostname = id.slice(0, 12);
  const files = writeContainerFiles(dir, hostname);
  const removeFiles = () => rmSync(dir, { recursive: true, force: true });
  if (mode === "none") return { mode: { kind: "private" }, files, release: async () => removeFiles() };
  const manager = networkManager(backend);
  let joined: NetworkMode;
  try {
    joined = await manager.attachRun(id, mode, { hostsPath: files.hosts, hostname });
  } catch (err) {
    removeFiles();
    throw err;
  }
  let released: Promise<void> | undefined;
  return {
    mode: joined,
    files,
    release: () =>
      (released ??= manager.release(id).then(removeFiles, (err: unknown) => {
        released = undefined;
        throw err;
      })),
  };
}

/** Releases the networks of the runs a killed build left in `buildDir` (their `net-<id>` directories); returns their ids. */
export async function releaseRunNetworks(backend: Backend, buildDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = readdirSync(buildDir).filter((name) => name.startsWith(filesPrefix));
  } catch {
    return [];
  }
  const ids = names.map((name) => name.slice(filesPrefix.length));
  for (const [i, id] of ids.entries()) {
    await networkManager(backend).release(id);
    rmSync(join(buildDir, names[i]!), { recursive: true, force: true });
  }
  return ids;
}
