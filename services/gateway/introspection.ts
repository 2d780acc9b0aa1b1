// Version and Introspection, served by berthd: it runs the process table, so it knows
// which services exist and can tell whether each is answering.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { IntrospectionServiceImplementation, Plugin } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import type { VersionServiceImplementation } from "../../core/gen/containerd/services/version/v1/version.ts";
import { fieldsAndLabels, parseFilters } from "../../core/filters.ts";
import { grpcRoutes, processTable } from "../../core/routes.ts";
import packageJson from "../../package.json" with { type: "json" };
import { socketAccepts } from "../../core/socket.ts";
import { makePrivateDir, writePrivateFile } from "../../core/private-files.ts";

export const berthVersion = `v${packageJson.version}`;

/** The server's identity, made once per root and kept across restarts. */
export function loadServerUuid(root: string): string {
  const dir = join(root, "gateway");
  const file = join(dir, "uuid");
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    makePrivateDir(dir);
    const uuid = randomUUID();
    writePrivateFile(file, uuid);
    return uuid;
  }
}

export const versionService: VersionServiceImplementation = {
  async version() {
    return { version: berthVersion, revision: "berth" };
  },
};

/**
 * The non-gRPC plugins containerd lists, with Berth's equivalents: one per snapshotter,
 * the walking differ, the content store, the metadata database and the collector.
 */
function corePlugins(snapshotters: readonly string[]): Partial<Plugin>[] {
  return [
    { type: "io.containerd.content.v1", id: "content", exports: { root: "content" } },
    ...snapshotters.map((id) => ({ type: "io.containerd.snapshotter.v1", id, exports: { root: `snapshots/${id}` } })),
    { type: "io.containerd.metadata.v1", id: "bolt", requires: ["io.containerd.content.v1", "io.containerd.snapshotter.v1"], exports: { database: "metadata.db" } },
    { type: "io.containerd.differ.v1", id: "walking", requires: ["io.containerd.metadata.v1"] },
    { type: "io.containerd.gc.v1", id: "scheduler", requires: ["io.containerd.metadata.v1"] },
  ];
}

const onDemand = new Set(processTable.filter((p) => p.onDemand).map((p) => p.name));

export function introspectionService(uuid: string, socketOf: (process: string) => string, snapshotters: readonly string[]): IntrospectionServiceImplementation {
  return {
    async server() {
      return { uuid };
    },
    async plugins(request) {
      const match = parseFilters(request.filters);
      // Each process is asked once, however many services it serves; one started on
      // demand is not expected to be running.
      const processes = [...new Set(Object.values(grpcRoutes))];
      const answering = await Promise.all(processes.map((process) => onDemand.has(process) || socketAccepts(socketOf(process))));
      const plugins: Partial<Plugin>[] = corePlugins(snapshotters).filter((plugin) => match(fieldsAndLabels({ type: plugin.type, id: plugin.id }, {})));
      for (const [service, process] of Object.entries(grpcRoutes)) {
        // containerd.services.content.v1.Content → id "content"
        const id = service.split(".")[2] ?? service;
        const plugin: Partial<Plugin> = { type: "io.containerd.grpc.v1", id, exports: { process } };
        if (!answering[processes.indexOf(process)]) {
          plugin.initErr = { code: 14, message: `service process ${process} is not running`, details: [] };
        }
        if (match(fieldsAndLabels({ type: plugin.type, id }, {}))) plugins.push(plugin);
      }
      return { plugins };
    },
  };
}
