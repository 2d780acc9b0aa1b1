// What the process bundles leave out (scripts/unused-modules-plugin.ts): bullmq's
// PostgreSQL backend, @grpc/proto-loader and undici's Milo parser. The plugin is checked on bundles of its
// own, built and run here; the shipped bundles are checked for what they hold.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { globSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { build } from "esbuild";
import { withoutUnusedModules } from "../scripts/unused-modules-plugin.ts";
import { distDir, repoRoot } from "./harness.ts";

const work = mkdtempSync(join(tmpdir(), "berth-process-bundles-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The names of the backend's module, which bullmq's index re-exports. */
const postgresNames = (): string[] =>
  Object.keys(createRequire(import.meta.url)(join(repoRoot, "node_modules", "bullmq", "dist", "cjs", "postgres", "index.js")) as object);

let bundles = 0;
/** `source` bundled (with `plugins`) into a script of its own in the temp dir. */
async function bundled(source: string, plugins: (typeof withoutUnusedModules)[]): Promise<string> {
  const entry = join(work, `entry-${++bundles}.ts`);
  writeFileSync(entry, source);
  const outfile = join(work, `out-${bundles}.cjs`);
  await build({ entryPoints: [entry], outfile, bundle: true, platform: "node", format: "cjs", logLevel: "error", nodePaths: [join(repoRoot, "node_modules")], plugins });
  return outfile;
}

/** The names bullmq exports in a bundle of it built with `plugins`, from a run of that bundle. */
async function bullmqExports(plugins: (typeof withoutUnusedModules)[]): Promise<string[]> {
  const script = await bundled('import * as bullmq from "bullmq";\nprocess.stdout.write(JSON.stringify(Object.keys(bullmq)));\n', plugins);
  return JSON.parse(execFileSync(process.execPath, [script], { encoding: "utf8" })) as string[];
}

test("bullmq bundled without its PostgreSQL backend still exports its Redis queues", async () => {
  const whole = await bullmqExports([]);
  const trimmed = await bullmqExports([withoutUnusedModules]);
  const postgres = new Set(postgresNames());
  assert.ok(whole.includes("PostgresQueueBackend"), "the published package exports the backend (else the plugin has nothing to do)");
  assert.deepEqual(trimmed.filter((n) => postgres.has(n)), []);
  for (const name of ["Queue", "Worker", "FlowProducer", "QueueEvents", "Job", "UnrecoverableError"]) assert.ok(trimmed.includes(name), name);
  assert.deepEqual(trimmed, whole.filter((n) => !postgres.has(n)), "only the backend's exports are gone");
});

test("grpc-js bundled without @grpc/proto-loader serves and calls, and its channelz loader fails naming what is missing", async () => {
  // A real server and client of the bundled grpc-js, on a UNIX socket in the temp dir;
  // then what grpc-js would do to serve channelz: load its descriptors through proto-loader.
  const socket = join(work, "echo.sock");
  const script = await bundled(
    `import * as grpc from "@grpc/grpc-js";
const method = { path: "/t.Echo/Say", requestStream: false, responseStream: false, requestSerialize: (b) => b, requestDeserialize: (b) => b, responseSerialize: (b) => b, responseDeserialize: (b) => b };
const server = new grpc.Server();
server.addService({ say: method }, { say: (call, done) => done(null, Buffer.concat([Buffer.from("echo:"), call.request])) });
server.bindAsync(${JSON.stringify(`unix://${socket}`)}, grpc.ServerCredentials.createInsecure(), () => {
  const client = new grpc.Client(${JSON.stringify(`unix://${socket}`)}, grpc.credentials.createInsecure());
  client.makeUnaryRequest(method.path, (b) => b, (b) => b, Buffer.from("hi"), (err, reply) => {
    let loader;
    try { require("@grpc/proto-loader").loadSync("channelz.proto"); } catch (e) { loader = e.message; }
    process.stdout.write(JSON.stringify({ err: err?.message, reply: reply?.toString(), loader }));
    client.close();
    server.forceShutdown();
  });
});
`,
    [withoutUnusedModules],
  );
  const out = JSON.parse(execFileSync(process.execPath, [script], { encoding: "utf8", timeout: 60_000 })) as { err?: string; reply?: string; loader?: string };
  assert.equal(out.err, undefined);
  assert.equal(out.reply, "echo:hi");
  assert.match(out.loader ?? "", /@grpc\/proto-loader is left out of Berth's bundles .*loadSync/);
  assert.equal(readFileSync(script, "utf8").includes("node_modules/protobufjs/"), false, "protobufjs is out of the bundle");
});

test("undici bundled without Milo requests with llhttp, and UNDICI_USE_MILO=1 fails naming the variable", async () => {
  // The two undici modules core/registry/http.ts loads, against a loopback server of this process.
  const script = await bundled(
    `import Agent from "undici/lib/dispatcher/agent.js";
import request from "undici/lib/api/api-request.js";
const agent = new Agent();
request.call(agent, { origin: process.argv[2], path: "/", method: "GET" })
  .then(async (res) => process.stdout.write(JSON.stringify({ status: res.statusCode, body: await res.body.text() })))
  .catch((err) => process.stdout.write(JSON.stringify({ error: err.message })))
  .finally(() => agent.close());
`,
    [withoutUnusedModules],
  );
  assert.equal(readFileSync(script, "utf8").includes("node_modules/undici/lib/milo/"), false, "Milo is out of the bundle");
  const server = createServer((_, res) => res.end("served"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const run = async (env: NodeJS.ProcessEnv) => {
      const child = spawn(process.execPath, [script, origin], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      await once(child, "close");
      return JSON.parse(out) as { status?: number; body?: string; error?: string };
    };
    assert.deepEqual(await run({ UNDICI_USE_MILO: "" }), { status: 200, body: "served" });
    assert.match((await run({ UNDICI_USE_MILO: "1" })).error ?? "", /Milo parser is left out of Berth's bundles.*UNDICI_USE_MILO/);
  } finally {
    server.close();
  }
});

test("no Berth source imports @grpc/proto-loader or protobufjs", () => {
  const sources = globSync(["core/**/*.ts", "services/**/*.ts", "cmd/**/*.ts"], { cwd: repoRoot }).filter((f) => !f.startsWith("core/gen/"));
  assert.ok(sources.length > 50);
  const offenders = sources.filter((file) => /from\s+["'](@grpc\/proto-loader|protobufjs)["'/]/.test(readFileSync(join(repoRoot, file), "utf8")));
  assert.deepEqual(offenders, []);
});

test("every process bundle holds grpc-js without @grpc/proto-loader and protobufjs, and none holds undici's Milo", () => {
  const files = globSync(["*.js", "*-chunks/*.js"], { cwd: distDir }).map((f) => join(distDir, f));
  const withGrpc = files.filter((file) => readFileSync(file, "utf8").includes("node_modules/@grpc/grpc-js/"));
  for (const name of ["tasks", "images", "snapshots", "diff", "jobs"]) assert.ok(withGrpc.includes(join(distDir, `${name}.js`)), `${name}.js bundles grpc-js`);
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    assert.ok(!text.includes("node_modules/@grpc/proto-loader/") && !text.includes("node_modules/protobufjs/"), `${file} bundles neither`);
    assert.ok(!text.includes("node_modules/undici/lib/milo/"), `${file} has no Milo`);
  }
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
