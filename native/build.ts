// Builds the native addon when a build is missing or older than its sources: node-gyp makes
// build/Release from scratch, then the Makefile it generated makes build/Sanitize (the
// ASan/UBSan configuration in binding.gyp, which native.test.ts also runs). From scratch, so
// the outputs end up newer than the sources even when make would find nothing to do (a
// touched binding.gyp). Called by scripts/build.ts.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, realpathSync, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

const nativeDir = new URL(".", import.meta.url).pathname;
const outputs = ["Release", "Sanitize"].map((type) => join(nativeDir, "build", type, "berth_native.node"));

function newestSourceMtime(): number {
  const src = join(nativeDir, "src");
  const sources = readdirSync(src).filter((name) => /\.[ch]$/.test(name)).map((name) => join(src, name));
  return Math.max(...[join(nativeDir, "binding.gyp"), ...sources].map((file) => statSync(file).mtimeMs));
}

// npm and npx export npm_config_node_gyp; otherwise use the node-gyp bundled with the npm on PATH.
function nodeGypCli(): string {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir || !existsSync(join(dir, "npm"))) continue;
    const npmRoot = dirname(dirname(realpathSync(join(dir, "npm"))));
    const cli = join(npmRoot, "node_modules", "node-gyp", "bin", "node-gyp.js");
    if (existsSync(cli)) return cli;
  }
  throw new Error("node-gyp not found: run the build through npm or npx, or put npm on PATH");
}

export function buildNativeAddon(): void {
  const newest = newestSourceMtime();
  if (outputs.every((file) => existsSync(file) && statSync(file).mtimeMs >= newest)) return;
  const run = (command: string, args: string[]) => execFileSync(command, args, { cwd: nativeDir, stdio: "inherit" });
  const gyp = nodeGypCli();
  // node-gyp finds the headers through npm_config_nodedir (npm exports it from .npmrc).
  run(process.execPath, [gyp, "rebuild", "--loglevel=warn"]);
  run("make", ["-s", "-C", "build", "BUILDTYPE=Sanitize"]);
}
