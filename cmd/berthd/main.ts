// berthd: the supervisor. Starts the private Redis and every process of the process
// table (core/routes.ts), keeps them running, and stops them (never the container
// shims) on SIGTERM. It serves, in-process, what is cheap to host beside it: the
// public gateway socket, namespaces, leases, events, garbage collection, version and
// introspection (docs/architecture.md says why).
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { serviceSocketPath } from "../../core/config.ts";
import { compileCacheEnv } from "../../core/compile-cache.ts";
import { createLogger } from "../../core/log.ts";
import { makePrivateDir, makeTopDir, writePrivateFile } from "../../core/private-files.ts";
import { idleTunedNodeFlags } from "../../core/node-flags.ts";
import { registrySettingsEnv } from "../../core/registry/settings.ts";
import { processTable } from "../../core/routes.ts";
import { initTelemetry, stopTelemetry } from "../../core/telemetry.ts";
import { openGateway } from "../../services/gateway/gateway.ts";
import { serveMetadata } from "../../services/metadata/serve.ts";
import { loadDaemonConfig } from "./config.ts";
import { startPrivateRedis, type PrivateRedis } from "./redis.ts";
import { acquireRootLock } from "./single-instance.ts";
import { SupervisedService } from "./supervisor.ts";
import { openEngineSocket, type EngineSocket } from "./engine-socket.ts";
import { berthVersion } from "../../services/gateway/introspection.ts";

const log = createLogger("berthd");
/** An on-demand process exits after this long without a call. */
const idleExitMs = Number(process.env.BERTH_IDLE_EXIT_MS) || 30_000;

async function main(): Promise<void> {
  const config = loadDaemonConfig(process.argv.slice(2));
  // The root is its owner's only, as containerd's.
  makeTopDir(config.root, 0o700);
  // <state> holds the public socket (0660): its group must be able to traverse <state>
  // to reach it, so <state> is 0711 (others may pass through, not list it); everything
  // in it is private, the service sockets' dir included.
  makeTopDir(config.state, 0o711);
  makePrivateDir(dirname(serviceSocketPath(config.state, "any")));
  await acquireRootLock(config.root);
  await initTelemetry("berth-berthd");

  let redis: PrivateRedis | undefined;
  let redisUrl = config.redisUrl;
  if (!redisUrl) {
    redis = await startPrivateRedis(config.root, config.state, log);
    redisUrl = `unix://${redis.socket}`;
    // berthd's own clients and every process it starts inherit it.
    process.env.BERTH_REDIS_PASSWORD = redis.password;
  }

  const common = ["--root", config.root, "--state", config.state];
  const services = new Map<string, SupervisedService>();
  // Each process compiles its bundle (jobs': 4.7 MB) at every start, and the on-demand
  // ones start often: V8's code cache, shared with the CLIs, turns that into a read.
  const compileCache = compileCacheEnv();
  // With keepProcesses, what would start on demand starts with berthd and stays.
  const onDemand = (spec: (typeof processTable)[number]) => spec.onDemand === true && !config.keepProcesses;
  for (const spec of processTable) {
    const script = fileURLToPath(new URL(`./${spec.name}.js`, import.meta.url));
    if (!existsSync(script)) {
      log.warn({ service: spec.name }, "service is not built; its API answers Unavailable");
      continue;
    }
    // Only on-demand processes exit when idle (an always-on one must not inherit berthd's setting).
    const env = { ...process.env, BERTH_REDIS_URL: redisUrl, BERTH_ADDRESS: config.address, BERTH_IDLE_EXIT_MS: onDemand(spec) ? String(idleExitMs) : undefined, [registrySettingsEnv]: JSON.stringify(config.registry), ...compileCache };
    // The idle-tuned flags (lite mode) suit only what mostly waits: not the pull path's processes, kept or not.
    services.set(
      spec.name,
      new SupervisedService({ name: spec.name, script, args: common, nodeFlags: spec.onDemand ? [] : idleTunedNodeFlags, env, socket: serviceSocketPath(config.state, spec.name), onDemand: onDemand(spec) }, log),
    );
  }

  // The pid file says "ready": it appears only once every service answers.
  const pidFile = join(config.state, "berthd.pid");
  let metadata: Awaited<ReturnType<typeof serveMetadata>> | undefined;
  let gateway: { close(): Promise<void> } | undefined;
  let engine: EngineSocket | undefined;
  let stopping = false;
  const shutdown = async (why: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, "berthd stopping");
    rmSync(pidFile, { force: true });
    // The front door first; the services before what they call (metadata), Redis last.
    const closing = (what: string) => (err: Error) => log.warn({ err: err.message, what }, "close failed");
    await engine?.close().catch(closing("engine"));
    await gateway?.close().catch(closing("gateway"));
    await Promise.all([...services.values()].map((service) => service.stop()));
    await metadata?.close().catch(closing("metadata"));
    await redis?.stop();
    await stopTelemetry();
    log.info("berthd stopped");
    process.exit(exitCode);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  // In-process services first (every other process calls them), the public socket last.
  try {
    const ctx = { root: config.root, state: config.state, name: "berthd", log };
    const ready = (name: string) => services.get(name)?.ready();
    metadata = await serveMetadata(ctx, redisUrl, ready);
    await Promise.all(
      processTable.filter((spec) => !onDemand(spec) && services.has(spec.name)).map((spec) => services.get(spec.name)!.start()),
    );
    // A public call that starts a process starts the ones its client calls next too (ProcessSpec.startsAlong).
    const startsAlong = new Map(processTable.map((spec) => [spec.name, spec.startsAlong ?? []]));
    const readyWithCompanions = (name: string) => {
      const starting = ready(name);
      if (starting) {
        for (const companion of startsAlong.get(name) ?? []) {
          ready(companion)?.catch((err: Error) => log.warn({ err: err.message, companion }, "cannot start a process alongside another"));
        }
      }
      return starting;
    };
    gateway = await openGateway(config.state, config.address, readyWithCompanions, log, metadata.local);
    metadata.startCollections();
    // The file owners unlink the files of rows the start-up collection removed when they
    // start; started on demand, they might not for days, so they start now to do it.
    const owners = { content: metadata.startup.blobs, snapshots: metadata.startup.snapshots };
    for (const [owner, removed] of Object.entries(owners)) {
      if (removed > 0) ready(owner)?.catch((err: Error) => log.warn({ err: err.message, owner }, "cannot start to sweep unreferenced files"));
    }
    engine = await openEngineSocket({ root: config.root, state: config.state, address: config.address, redisUrl, registry: config.registry, log: log.child({ component: "engine" }), serverVersion: berthVersion.replace(/^v/, "") }, log, config.engineTcp);
  } catch (err) {
    log.error({ err: (err as Error).message }, "start-up failed");
    await shutdown("start-up failed", 1);
  }
  writePrivateFile(pidFile, String(process.pid));
  log.info({ address: config.address, root: config.root, state: config.state }, "berthd ready");
}

main().catch((err: Error) => {
  process.stderr.write(`berthd: ${err.message}\n`);
  process.exit(1);
});
