// What receiving a blob body costs the process that receives it: the four layers of
// bench/pull.ts's image (200 MiB) fetched at once from a local docker-registry, bodies
// read and dropped, by undici (as the registry client's other requests are) and by
// the direct GET the content process downloads blobs with (core/registry/direct-get.ts);
// curl beside them as a floor. CPU of this process (user+sys), and of the registry.
// BENCH_TLS=1: the registry serves HTTPS with a test CA (real registries are HTTPS).
// Run: node bench/blob-body.ts (BENCH_RUNS, default 5); results in bench/results/blob-body.md.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "../core/registry/http.ts";
import { directGet } from "../core/registry/direct-get.ts";
import { RegistryClient, parseRegistryReference, pushBlob } from "../core/registry/index.ts";
import { TestRegistry, makePki } from "../test/fixtures/registry.ts";
import { repoRoot } from "../test/harness.ts";
import { median } from "./measure.ts";
import { pullBenchImage } from "./pull-image.ts";

const runs = Number(process.env.BENCH_RUNS ?? 5);
const useTls = Boolean(process.env.BENCH_TLS);
const base = mkdtempSync(join(tmpdir(), "berth-bench-blob-body-"));
const pki = useTls ? makePki(join(base, "pki")) : undefined;
const registry = await TestRegistry.start(join(base, "registry"), pki ? { tls: { certificate: pki.serverCert, key: pki.serverKey } } : {});
try {
  const image = await pullBenchImage([80, 60, 40, 20]);
  // certs.d/<host>/ca.crt: the test CA, for the registry client's pushes.
  const certsDir = join(base, "certs.d");
  if (pki) {
    mkdirSync(join(certsDir, registry.host), { recursive: true });
    copyFileSync(pki.caCert, join(certsDir, registry.host, "ca.crt"));
  }
  const client = new RegistryClient({ certsDir, credentials: async () => undefined });
  const ref = parseRegistryReference(`${registry.host}/bench/blobs:1`);
  for (const layer of image.layers) await pushBlob(client, ref, layer, (async function* () { yield layer.data; })());
  await client.close();
  const scheme = pki ? "https" : "http";
  const urls = image.layers.map((l) => new URL(`${scheme}://${registry.host}/v2/bench/blobs/blobs/${l.digest}`));
  const tls = pki ? { ca: [readFileSync(pki.caCert, "utf8")] } : undefined;
  const registryPid = Number(execFileSync("pgrep", ["-f", `docker-registry serve ${join(base, "registry")}`], { encoding: "utf8" }).trim().split("\n")[0]);
  const cpuOf = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  };
  const agent = new Agent({ connections: 8, ...(tls ? { connect: tls } : {}) });
  const ways: Record<string, () => Promise<void>> = {
    "curl (4 processes)": async () => {
      const cacert = pki ? `--cacert ${pki.caCert} ` : "";
      const r = spawnSync("sh", ["-c", `${urls.map((u) => `curl -sf ${cacert}-o /dev/null ${u.href} &`).join(" ")} wait`]);
      if (r.status !== 0) throw new Error(`curl failed: ${r.stderr}`);
    },
    "undici request, body iterated": async () => {
      await Promise.all(
        urls.map(async (url) => {
          const res = await request(url, { method: "GET", dispatcher: agent });
          for await (const _ of res.body);
        }),
      );
    },
    "direct GET, pipeTo": async () => {
      await Promise.all(
        urls.map(async (url) => {
          const res = await directGet(url, { headers: {}, ...(tls ? { tls } : {}) });
          await res.body.pipeTo(async () => undefined);
        }),
      );
    },
  };
  const results = new Map<string, { wall: number[]; cpu: number[]; registry: number[] }>(Object.keys(ways).map((k) => [k, { wall: [], cpu: [], registry: [] }]));
  for (let run = 0; run < runs; run++) {
    for (const [name, fetchAll] of Object.entries(ways)) {
      const registryBefore = cpuOf(registryPid);
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      await fetchAll();
      const cpu = process.cpuUsage(cpuBefore);
      const r = results.get(name)!;
      r.wall.push(performance.now() - started);
      r.cpu.push((cpu.user + cpu.system) / 1000);
      r.registry.push(cpuOf(registryPid) - registryBefore);
    }
  }
  await agent.close();
  const report = [
    `# Receiving blob bodies (${new Date().toISOString()}, median of ${runs} runs, the ways alternating)`,
    "",
    `The 4 layers of bench/pull.ts's image (80 + 60 + 40 + 20 MiB) fetched at once from a local docker-registry over ${pki ? "HTTPS (a test CA)" : "plain HTTP"}, bodies dropped.`,
    "",
    "| way | wall ms | CPU ms of the receiving process | registry CPU ms |",
    "|---|---:|---:|---:|",
    ...[...results].map(([name, r]) => `| ${name} | ${median(r.wall).toFixed(0)} | ${name.startsWith("curl") ? "(other processes)" : median(r.cpu).toFixed(0)} | ${median(r.registry).toFixed(0)} |`),
    "",
    `Load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(" ")} (2 cores, shared).`,
    "",
  ].join("\n");
  process.stdout.write(report);
  writeFileSync(join(repoRoot, "bench", "results", pki ? "blob-body-tls.md" : "blob-body.md"), report);
} finally {
  await registry.stop();
  rmSync(base, { recursive: true, force: true });
}
