// What the process bundles leave out to start faster: bullmq's PostgreSQL backend
// (scripts/bullmq-plugin.ts). The plugin is checked on a bundle of its own, built and
// run here; the shipped bundles are checked for what they hold.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { globSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { build } from "esbuild";
import { withoutBullmqPostgres } from "../scripts/bullmq-plugin.ts";
import { distDir, repoRoot } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "berth-process-bundles-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The names of the backend's module, which bullmq's index re-exports. */
const postgresNames = (): string[] =>
  Object.keys(createRequire(import.meta.url)(join(repoRoot, "node_modules", "bullmq", "dist", "cjs", "postgres", "index.js")) as object);

/** The names bullmq exports in a bundle of it built with `plugins`, from a run of that bundle. */
async function bullmqExports(plugins: typeof withoutBullmqPostgres[]): Promise<string[]> {
  const entry = join(work, "entry.ts");
  writeFileSync(entry, 'import * as bullmq from "bullmq";\nprocess.stdout.write(JSON.stringify(Object.keys(bullmq)));\n');
  const outfile = join(work, `out-${plugins.length}.cjs`);
  await build({ entryPoints: [entry], outfile, bundle: true, platform: "node", format: "cjs", logLevel: "error", nodePaths: [join(repoRoot, "node_modules")], plugins });
  return JSON.parse(execFileSync(process.execPath, [outfile], { encoding: "utf8" })) as string[];
}

test("bullmq bundled without its PostgreSQL backend still exports its Redis queues", async () => {
  const whole = await bullmqExports([]);
  const trimmed = await bullmqExports([withoutBullmqPostgres]);
  const postgres = new Set(postgresNames());
  assert.ok(whole.includes("PostgresQueueBackend"), "the published package exports the backend (else the plugin has nothing to do)");
  assert.deepEqual(trimmed.filter((n) => postgres.has(n)), []);
  for (const name of ["Queue", "Worker", "FlowProducer", "QueueEvents", "Job", "UnrecoverableError"]) assert.ok(trimmed.includes(name), name);
  assert.deepEqual(trimmed, whole.filter((n) => !postgres.has(n)), "only the backend's exports are gone");
});

test("no Berth source imports an export of bullmq's PostgreSQL backend (the bundles have none)", () => {
  const postgres = new Set(postgresNames());
  assert.ok(postgres.has("PostgresQueueBackend"));
  const sources = globSync(["core/**/*.ts", "services/**/*.ts", "cmd/**/*.ts"], { cwd: repoRoot }).filter((f) => !f.startsWith("core/gen/"));
  assert.ok(sources.length > 50);
  const importsFromBullmq = /import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+["']bullmq["']/g;
  const offenders = sources.flatMap((file) =>
    [...readFileSync(join(repoRoot, file), "utf8").matchAll(importsFromBullmq)].flatMap((m) =>
      m[1]!.split(",").map((s) => s.trim().replace(/^type\s+/, "")).filter((name) => postgres.has(name.split(/\s+as\s+/)[0]!)).map((name) => `${file}: ${name}`),
    ),
  );
  assert.deepEqual(offenders, []);
});

test("the jobs bundle and berthd's job chunk hold bullmq's Redis backend and not its PostgreSQL one", () => {
  const bundles = [join(distDir, "jobs.js"), ...globSync(join(distDir, "berthd-chunks", "*.js"))].filter((file) => readFileSync(file, "utf8").includes("bullmq"));
  assert.ok(bundles.length >= 2, `jobs and berthd's build jobs bundle bullmq: ${bundles.join(", ")}`);
  for (const file of bundles) {
    const text = readFileSync(file, "utf8");
    assert.ok(text.includes("RedisQueueBackend"), `${file} has the Redis backend`);
    assert.ok(!text.includes("PostgresQueueBackend"), `${file} has no PostgreSQL backend`);
  }
});
