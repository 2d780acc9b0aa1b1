// berthd: the supervisor. Starts the private Redis and every service process, keeps
// them running, and stops them (never the container shims) on SIGTERM.
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { serviceSocketPath } from "../../core/config.ts";
import { createLogger } from "../../core/log.ts";
import { makePrivateDir, makeTopDir, writePrivateFile } from "../../core/private-files.ts";
import { serviceProcesses } from "../../core/routes.ts";
import { loadDaemonConfig } from "./config.ts";
import { startPrivateRedis, type PrivateRedis } from "./redis.ts";
import { acquireRootLock } from "./single-instance.ts";
import { SupervisedService } from "./supervisor.ts";

const log = createLogger("berthd");

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

  let redis: PrivateRedis | undefined;
  let redisUrl = config.redisUrl;
  if (!redisUrl) {
    redis = await startPrivateRedis(config.root, config.state, log);
    redisUrl = `unix://${redis.socket}`;
  }

  const common = ["--root", config.root, "--state", config.state];
  const built = serviceProcesses.filter((name) => {
    const present = existsSync(new URL(`./${name}.js`, import.meta.url));
    if (!present) log.warn({ service: name }, "service is not built; its API answers Unimplemented");
    return present;
  });
  const services = built.map(
    (name) =>
      new SupervisedService(
        {
          name,
          script: fileURLToPath(new URL(`./${name}.js`, import.meta.url)),
          args: name === "gateway" ? [...common, "--address", config.address] : common,
          env: { ...process.env, BERTH_REDIS_URL: redisUrl },
          socket: name === "gateway" ? config.address : serviceSocketPath(config.state, name),
        },
        log,
      ),
  );

  // The pid file says "ready": it appears only once every service answers.
  const pidFile = join(config.state, "berthd.pid");
  let stopping = false;
  const shutdown = async (why: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, "berthd stopping");
    rmSync(pidFile, { force: true });
    for (const service of [...services].reverse()) await service.stop();
    await redis?.stop();
    log.info("berthd stopped");
    process.exit(exitCode);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));

  // metadata first (the others call it), the gateway last (it is the front door);
  // the ones between do not depend on each other and start together.
  const [first, ...rest] = services;
  const last = rest.pop();
  try {
    await first?.start();
    await Promise.all(rest.map((service) => service.start()));
    await last?.start();
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
