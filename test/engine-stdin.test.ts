// Large stdin through `docker run -i` when the CLI's stdin is a Node child's pipe (a
// socketpair, not a pipe(2)): every byte must reach the container, and its end too.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { distDir, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";

let d: Daemon;

before(async () => {
  d = await startEngineWithBusybox();
});

after(async () => {
  try {
    if (d) await removeEveryContainer(d);
  } finally {
    await d?.destroy();
  }
});

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a CLI with `input` on a spawned pipe; a run that never ends is killed and reported as hung. */
function runPiped(cmd: string, args: string[], input: Buffer, env: NodeJS.ProcessEnv, hangAfterMs = 60_000): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.stdin.on("error", () => undefined);
    const hung = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} still running after ${hangAfterMs} ms with ${input.length} bytes of stdin (stdout so far: ${Buffer.concat(out).toString()})`));
    }, hangAfterMs);
    child.on("error", (e) => {
      clearTimeout(hung);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(hung);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.end(input);
  });
}

const twoMegabytes = Buffer.alloc(2 * 1024 * 1024, "0123456789abcdef");

test("docker run -i --rm wc -c counts 2 MB of piped stdin, five times over", async () => {
  const env = { ...process.env, DOCKER_HOST: `unix://${d.dockerSocket}`, DOCKER_CONFIG: join(d.base, "docker-config") };
  for (let i = 0; i < 5; i++) {
    const r = await runPiped("docker", ["run", "-i", "--rm", "busybox", "wc", "-c"], twoMegabytes, env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), String(twoMegabytes.length), `run ${i + 1}`);
  }
});

test("berth run -i --rm wc -c counts 2 MB of piped stdin, five times over", async () => {
  const home = join(d.base, "berth-home");
  const env = { ...process.env, BERTH_HOST: `unix://${d.dockerSocket}`, HOME: home, DOCKER_CONFIG: join(home, ".docker") };
  for (let i = 0; i < 5; i++) {
    const r = await runPiped(process.execPath, [join(distDir, "berth.js"), "run", "-i", "--rm", "busybox", "wc", "-c"], twoMegabytes, env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), String(twoMegabytes.length), `run ${i + 1}`);
  }
});
