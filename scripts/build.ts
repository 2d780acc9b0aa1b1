// npm run build: generate the gRPC code, type-check, and bundle every process entry
// (services/<name>/main.ts, cmd/<name>/main.ts) into dist/<name>.js with esbuild.
// Flags: --no-typecheck (bundle only), --no-generate.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build, type BuildOptions } from "esbuild";
import { buildNativeAddon } from "../native/build.ts";
import { builtinsWithoutNamespaces } from "./builtins-plugin.ts";
import { withoutUnusedModules } from "./unused-modules-plugin.ts";
import { buildShim } from "../shim/build.ts";

const root = new URL("..", import.meta.url).pathname;
const args = new Set(process.argv.slice(2));
const bin = (tool: string) => join(root, "node_modules", ".bin", tool);
const run = (tool: string, toolArgs: string[]) => execFileSync(bin(tool), toolArgs, { cwd: root, stdio: "inherit" });

if (!args.has("--no-generate")) {
  rmSync(join(root, "core", "gen"), { recursive: true, force: true });
  run("buf", ["generate"]);
}
if (!args.has("--no-typecheck")) run("tsc", ["--noEmit", "-p", "."]);

function entries(dir: string): Record<string, string> {
  const found: Record<string, string> = {};
  for (const name of readdirSync(join(root, dir))) {
    const main = join(root, dir, name, "main.ts");
    if (existsSync(main)) found[name] = main;
  }
  return found;
}

// The Node-API addon (native/) that services load for mount, mknod and xattrs.
buildNativeAddon();
// The per-container shim, in C (shim/).
buildShim();

// Bundles of processes that no longer exist must not linger (berthd would start them).
for (const name of (existsSync(join(root, "dist")) ? readdirSync(join(root, "dist"), { withFileTypes: true }) : []).filter((e) => /\.js(\.map)?$/.test(e.name))) {
  rmSync(join(root, "dist", name.name));
}

const shared: BuildOptions = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node24",
  sourcemap: "linked",
  logLevel: "warning",
  // CommonJS dependencies inside an ESM bundle still call require().
  banner: { js: "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);" },
  // Loaded only when tracing is configured (see core/telemetry.ts).
  external: ["@opentelemetry/sdk-trace-node", "@opentelemetry/exporter-trace-otlp-http", "@opentelemetry/resources", "@opentelemetry/core"],
  // A process keeps its bundle's source in its V8 heap for as long as it runs, and one
  // non-Latin-1 character (a "→" in a comment) stores all of it as UTF-16: tasks.js
  // held 3 MiB, berthd's 1.6 MiB of static source 1.9 MiB. Without comments and
  // whitespace it is ASCII and a third smaller (berthd's heap 13.1 → 12.2 MiB, idle);
  // names stay, so stack traces still name their functions.
  minifyWhitespace: true,
  minifySyntax: true,
  plugins: [withoutUnusedModules],
};

const { berthctl, berthd, berth, content, ...processes } = { ...entries("services"), ...entries("cmd") };
await build({ ...shared, entryPoints: processes, outdir: join(root, "dist") });
// berthd loads the Engine API only once it has work (cmd/berthd/engine-socket.ts): split,
// so that code is a chunk of its own that an idle daemon never reads.
rmSync(join(root, "dist", "berthd-chunks"), { recursive: true, force: true });
await build({ ...shared, entryPoints: { berthd: berthd! }, outdir: join(root, "dist"), splitting: true, chunkNames: "berthd-chunks/[name]-[hash]" });
// content loads the registry client (undici) with its first blob download
// (services/content/fetch.ts): split, so a content process that only stores never reads it.
rmSync(join(root, "dist", "content-chunks"), { recursive: true, force: true });
await build({ ...shared, entryPoints: { content: content! }, outdir: join(root, "dist"), splitting: true, chunkNames: "content-chunks/[name]-[hash]" });

// berthctl starts once per command, so its start-up counts. dist/berthctl.js is its
// entry alone (compile cache, the fast path for `version`): one small file without the
// require() banner. The command line proper is dist/berthctl-cli.js, which the entry
// imports when needed, split so that the image library loads only for image commands.
// Minified: parsing is a measurable part of a short command's time (5 ms less CPU for
// `version`); the source maps keep stack traces readable. Builtins come through
// process.getBuiltinModule (see builtins-plugin.ts).
const quickStart: BuildOptions = {
  ...shared,
  minify: true,
  plugins: [withoutUnusedModules, builtinsWithoutNamespaces],
  banner: { js: "const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);" },
};
await build({ ...quickStart, banner: {}, entryPoints: { berthctl: berthctl! }, outdir: join(root, "dist") });
rmSync(join(root, "dist", "berthctl-chunks"), { recursive: true, force: true });
await build({
  ...quickStart,
  entryPoints: { "berthctl-cli": join(root, "cmd", "berthctl", "cli.ts") },
  outdir: join(root, "dist"),
  splitting: true,
  chunkNames: "berthctl-chunks/[name]-[hash]",
});

// berth (the docker-style CLI) starts once per command too, and `berth ps` is measured
// against `docker ps` (bench/engine-cli.ts): the entry alone in dist/berth.js (compile
// cache on), and the whole command line in one file, dist/berth-cli.js.
await build({ ...quickStart, banner: {}, entryPoints: { berth: berth! }, outdir: join(root, "dist") });
await build({ ...quickStart, entryPoints: { "berth-cli": join(root, "cmd", "berth", "cli.ts") }, outdir: join(root, "dist") });
