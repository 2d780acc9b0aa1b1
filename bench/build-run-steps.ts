// node bench/build-run-steps.ts: what one RUN step costs in a Berth build, end to end through
// the docker CLI: --no-cache builds of FROM busybox + N RUNs and of FROM busybox + N ENVs,
// interleaved; (RUNs - ENVs) / N. With AB_DIST=<a dist directory under this checkout> a
// second daemon runs from that build (e.g. a copy of dist/ from before a change) and both
// are measured in the same rounds. STEPS (6) and ROUNDS (5) set the sizes; NETWORK sets the
// builds' --network (unset: the CLI's default, the default bridge). Prints only.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon, type Daemon } from "../test/harness.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { skopeoArchives } from "../test/fixtures/archives.ts";
import { median } from "./measure.ts";

const n = Number(process.env.STEPS ?? 6);
const rounds = Number(process.env.ROUNDS ?? 5);
const base = mkdtempSync(join(tmpdir(), "berth-run-steps-"));
mkdirSync(join(base, "archives"));
const archive = readFileSync(skopeoArchives(join(base, "archives"), await buildBusyboxImage()).dockerArchive);
const daemons: [string, Daemon][] = [];
try {
  daemons.push(["new", await startDaemon({ base: join(base, "new") })]);
  if (process.env.AB_DIST) {
    const launcher = join(base, "launch-old");
    writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${join(process.env.AB_DIST, "berthd.js")} "$@"\n`);
    chmodSync(launcher, 0o755);
    daemons.push(["old", await startDaemon({ base: join(base, "old"), launcher })]);
  }
  const docker = (d: Daemon, args: string[], input?: Buffer) => {
    const r = spawnSync("docker", args, { input, env: { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(base, "cfg"), DOCKER_BUILDKIT: "0" } });
    if (r.status !== 0) throw new Error(`docker ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.toString();
  };
  const ctx = (name: string, lines: string[]) => {
    const dir = join(base, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), ["FROM busybox", ...lines, ""].join("\n"));
    return dir;
  };
  const runs = ctx("runs", Array.from({ length: n }, (_, i) => `RUN echo ${i} > /f${i}`));
  const envs = ctx("envs", Array.from({ length: n }, (_, i) => `ENV V${i}=${i}`));
  const time = (d: Daemon, dir: string) => {
    const t = process.hrtime.bigint();
    docker(d, ["build", "-q", "--no-cache", ...(process.env.NETWORK ? ["--network", process.env.NETWORK] : []), dir]);
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  const results = new Map(daemons.map(([name]) => [name, { r: [] as number[], e: [] as number[] }]));
  for (const [, d] of daemons) {
    docker(d, ["load", "-q"], archive);
    time(d, runs);
  }
  for (let i = 0; i < rounds; i++) {
    for (const [name, d] of daemons) {
      results.get(name)!.r.push(time(d, runs));
      results.get(name)!.e.push(time(d, envs));
    }
  }
  for (const [name, { r, e }] of results) console.log(`${name}: runs ${median(r).toFixed(0)} envs ${median(e).toFixed(0)} per RUN ${((median(r) - median(e)) / n).toFixed(1)} ms  (runs: ${r.map((x) => x.toFixed(0)).join(" ")})`);
} finally {
  for (const [, d] of daemons) await d.stop();
  rmSync(base, { recursive: true, force: true });
}
