// What the benchmarks that compare Berth's Engine API with a real dockerd share: the same
// docker CLI driving either engine (one DOCKER_CONFIG of the bench's own), its wall
// time, and removing every container before an engine stops.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startDaemon } from "../test/harness.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { startDockerd } from "./daemons.ts";

export interface Engine {
  name: string;
  /** The Engine API socket (docker.sock). */
  socket: string;
  stop(): Promise<void>;
}

export type DockerCli = (socket: string, args: string[], input?: Buffer) => string;

/** The docker CLI against a given engine's socket; a failing command throws with its stderr. */
export function dockerCli(configDir: string): DockerCli {
  return (socket, args, input) => {
    const r = spawnSync("docker", args, { input, env: { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: configDir }, maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`docker ${args.join(" ")} (${socket}): ${r.stderr}`);
    return r.stdout.toString();
  };
}

/** Wall time of one docker command, in ms. */
export function dockerWallMs(docker: DockerCli, socket: string, args: string[]): number {
  const start = process.hrtime.bigint();
  docker(socket, args);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Removes every container of each engine (then what `beforeStop` removes too) and stops it; a failed clean-up is reported, not thrown, so every engine stops. */
export async function stopEngines(engines: Engine[], docker: DockerCli, beforeStop: (e: Engine) => void = () => {}): Promise<void> {
  for (const e of engines) {
    try {
      const ids = docker(e.socket, ["ps", "-aq"]).split("\n").filter(Boolean);
      if (ids.length > 0) docker(e.socket, ["rm", "-f", ...ids]);
      beforeStop(e);
    } catch (err) {
      console.error(`cleaning up ${e.name}: ${(err as Error).message}`);
    }
    await e.stop();
  }
}

/**
 * Starts Berth and a real dockerd under `base`, pushing each onto `engines` as it comes up
 * (so the caller's clean-up stops whatever did start), and loads the busybox image into both.
 */
export async function startBerthAndDockerd(base: string, engines: Engine[], docker: DockerCli): Promise<void> {
  mkdirSync(join(base, "archives"));
  const archive = readFileSync(skopeoArchives(join(base, "archives"), await buildBusyboxImage()).dockerArchive);
  const berth = await startDaemon({ base: join(base, "berth") });
  engines.push({ name: "berth", socket: berth.dockerSocket, stop: () => berth.stop() });
  mkdirSync(join(base, "dockerd"));
  const dockerd = await startDockerd(join(base, "dockerd"));
  engines.push({ name: "dockerd", socket: dockerd.address, stop: () => dockerd.stop() });
  for (const e of engines) docker(e.socket, ["load", "-q"], archive);
}
