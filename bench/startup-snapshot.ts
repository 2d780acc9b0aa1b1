// Whether a V8 startup snapshot (node --build-snapshot) can hold what Berth's processes
// load: for each builtin and each package bundle, a script that loads it and sets a
// deserialize main is snapshotted, and the blob is started. Node 24 aborts the build
// ("CheckGlobalAndEternalHandles failed") once http, https, http2 or tls is loaded:
// their bindings hold objects the snapshot cannot serialize. Every service loads
// grpc-js (http2), ioredis (tls) or undici (http) while its modules evaluate, so no
// service bundle can be snapshotted (bench/results/pull-profile.md, "Tried").
// Rerun after a Node upgrade: node bench/startup-snapshot.ts
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { repoRoot } from "../test/harness.ts";

const builtins = ["net", "http", "https", "http2", "tls", "node:sqlite", "child_process"];
const packages = ["@grpc/grpc-js", "nice-grpc", "ioredis", "bullmq", "undici", "pino"];
const work = mkdtempSync(join(tmpdir(), "berth-bench-startup-snapshot-"));
/** V8's reason for a fatal error ("# CheckGlobalAndEternalHandles failed"), or the last error line. */
const reason = (text: string) => {
  const lines = text.split("\n").map((l) => l.replace(/^#\s*/, "").trim());
  return lines.find((l) => / failed$|^Check failed|^Unknown external reference/.test(l)) ?? lines.filter((l) => /Error/.test(l)).slice(-1)[0] ?? "";
};

try {
  process.stdout.write(`# V8 startup snapshots of what Berth's processes load (Node ${process.version})\n\n| loads | snapshot built | blob starts |\n|---|---|---|\n`);
  for (const [i, what] of [...builtins, ...packages].entries()) {
    const entry = join(work, `entry-${i}.js`);
    const script = join(work, `script-${i}.cjs`);
    writeFileSync(entry, `require(${JSON.stringify(what)});\nrequire("node:v8").startupSnapshot.setDeserializeMainFunction(() => process.stdout.write("started"));\n`);
    // One file, as --build-snapshot requires: a package is bundled with its dependencies.
    await build({ entryPoints: [entry], outfile: script, bundle: true, platform: "node", format: "cjs", logLevel: "silent", nodePaths: [join(repoRoot, "node_modules")] });
    const blob = join(work, `blob-${i}`);
    const made = spawnSync(process.execPath, ["--snapshot-blob", blob, "--build-snapshot", script], { cwd: work, encoding: "utf8" });
    const built = made.status === 0 && existsSync(blob);
    const ran = built ? spawnSync(process.execPath, ["--snapshot-blob", blob], { cwd: work, encoding: "utf8" }) : undefined;
    const builtCell = built ? "yes" : `no: ${made.signal ?? `exit ${made.status}`}, ${reason(made.stderr)}`;
    const ranCell = ran ? (ran.stdout === "started" ? "yes" : `no: ${reason(ran.stderr)}`) : "—";
    process.stdout.write(`| ${what} | ${builtCell} | ${ranCell} |\n`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
