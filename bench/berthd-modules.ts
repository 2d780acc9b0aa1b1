// node bench/berthd-modules.ts: what each part of berthd's import graph costs in private
// memory once loaded, idle and trimmed. Each probe is a bundle (esbuild, berthd's
// options) of an entry that imports one module and keeps a reference to its exports;
// it runs in its own node with berthd's V8 flags, trims its heap (core/heap-trim.ts) and
// reports its USS (/proc/self/smaps_rollup) and V8 heap, median of BENCH_ROUNDS. The
// first probe imports nothing but the trim, so the others read as its baseline plus
// the module. Bundled without whitespace and comments, as berthd is (BENCH_MINIFY=0: with).
// BENCH_PROBE_WAIT_MS: how long a probe idles before it trims and measures (300).
// Results printed (Markdown).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { berthdNodeFlags } from "../core/node-flags.ts";
import { repoRoot } from "../test/harness.ts";
import { median } from "./measure.ts";

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const minify = process.env.BENCH_MINIFY !== "0";

/** Probe name → module specifier (relative to the repo root, or a package). */
const probes: Record<string, string> = {
  "nothing (baseline: node, the trim)": "",
  "node:http2 + node:sqlite": "node:http2",
  "core/log.ts (pino)": "./core/log.ts",
  "@grpc/grpc-js": "@grpc/grpc-js",
  "nice-grpc": "nice-grpc",
  "core/grpc-server.ts": "./core/grpc-server.ts",
  "generated codecs berthd serves (namespaces, leases, containers, events)": "./core/gen/containerd/services/containers/v1/containers.ts",
  "services/gateway/store-reads.ts (content, images, snapshots readers)": "./services/gateway/store-reads.ts",
  "services/gateway/gateway.ts": "./services/gateway/gateway.ts",
  "services/metadata/serve.ts (in-process services, store reads)": "./services/metadata/serve.ts",
  "cmd/berthd/redis.ts": "./cmd/berthd/redis.ts",
  "everything berthd imports at start": "./cmd/berthd/main.ts?imports",
};

const work = mkdtempSync(join(repoRoot, ".berthd-modules-"));
try {
  const script = (specifier: string) => {
    const trim = `import { trimHeap } from ${JSON.stringify(join(repoRoot, "core/heap-trim.ts"))};\nimport { readFileSync } from "node:fs";\nimport v8 from "node:v8";\n`;
    let load = "";
    if (specifier === "node:http2") load = `import * as m1 from "node:http2"; import * as m2 from "node:sqlite"; globalThis.kept = [m1, m2];\n`;
    else if (specifier.endsWith("?imports")) {
      // main.ts' imports without running main(): its import lines, made absolute.
      const main = join(repoRoot, "cmd/berthd/main.ts");
      const lines = spawnSync("grep", ["-E", "^import ", main], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
      const names: string[] = [];
      for (const line of lines) {
        const from = /from "(\.[^"]+)"/.exec(line)?.[1];
        const named = /import \{([^}]*)\}/.exec(line)?.[1];
        if (!from || !named || line.startsWith("import type")) continue;
        const idents = named.split(",").map((s) => s.trim()).filter((s) => s && !s.startsWith("type "));
        names.push(...idents.map((s) => s.split(/\s+as\s+/).pop()!));
        load += `import { ${idents.join(", ")} } from ${JSON.stringify(join(repoRoot, "cmd/berthd", from))};\n`;
      }
      load += `globalThis.kept = [${names.join(", ")}];\n`;
    } else if (specifier) load = `import * as m from ${JSON.stringify(specifier.startsWith(".") ? join(repoRoot, specifier) : specifier)};\nglobalThis.kept = m;\n`;
    const report = `const log = { debug() {} };\nsetTimeout(() => { trimHeap(log); trimHeap(log);\nconst t = readFileSync("/proc/self/smaps_rollup", "utf8"); const f = (n) => Number(new RegExp("^" + n + ":\\\\s+(\\\\d+)", "m").exec(t)[1]);\nconst h = v8.getHeapStatistics();\nprocess.stdout.write(JSON.stringify({ uss: f("Private_Clean") + f("Private_Dirty"), heapUsed: h.used_heap_size / 1024, heapTotal: h.total_heap_size / 1024 }));\n}, Number(process.env.BENCH_PROBE_WAIT_MS ?? 300));\n`;
    return trim + load + report;
  };
  const rows: string[] = [];
  let baseline: number | undefined;
  for (const [name, specifier] of Object.entries(probes)) {
    const entry = join(work, "entry.ts");
    writeFileSync(entry, script(specifier));
    const outdir = join(work, `probe-${Object.keys(probes).indexOf(name)}`);
    const outfile = join(outdir, "entry.js");
    // Split as berthd is: what it imports dynamically stays out of the loaded source.
    await build({
      entryPoints: [entry],
      outdir,
      splitting: true,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node24",
      logLevel: "error",
      minifyWhitespace: minify,
      minifySyntax: minify,
      banner: { js: "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);" },
      external: ["@opentelemetry/sdk-trace-node", "@opentelemetry/exporter-trace-otlp-http", "@opentelemetry/resources", "@opentelemetry/core"],
    });
    const samples: { uss: number; heapUsed: number; heapTotal: number }[] = [];
    for (let i = 0; i < rounds; i++) {
      const r = spawnSync(process.execPath, [...berthdNodeFlags, outfile], { encoding: "utf8" });
      if (r.status !== 0) throw new Error(`probe ${name} failed: ${r.stderr}`);
      samples.push(JSON.parse(r.stdout));
    }
    const uss = median(samples.map((s) => s.uss));
    baseline ??= uss;
    const kib = (x: number) => (x / 1024).toFixed(1);
    rows.push(`| ${name} | ${kib(uss)} | ${uss === baseline ? "" : `+${kib(uss - baseline)}`} | ${kib(median(samples.map((s) => s.heapUsed)))} / ${kib(median(samples.map((s) => s.heapTotal)))} |`);
    process.stderr.write(`${rows.at(-1)}\n`);
  }
  console.log(`berthd's modules, each alone (node ${process.version}, ${berthdNodeFlags.join(" ")}${minify ? ", bundles minified" : ""}; median of ${rounds}); MiB\n`);
  console.log("| imports | USS | over the baseline | V8 heap used / total |");
  console.log("|---|---:|---:|---:|");
  for (const row of rows) console.log(row);
} finally {
  rmSync(work, { recursive: true, force: true });
}
