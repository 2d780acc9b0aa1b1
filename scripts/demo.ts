// npm run demo — the main job: bring berthd up on its defaults, build a busybox image
// from the machine's busybox-static, store it, and run a container from it. Each step
// prints what it did; a step the engine cannot do yet says so and the demo stops there.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, openSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { Readable } from "node:stream";
import { join } from "node:path";
import { defaultRoot, defaultState, gatewaySocketPath } from "../core/config.ts";
import { IntrospectionDefinition } from "../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../core/gen/containerd/services/version/v1/version.ts";
import { grpcClient } from "../core/grpc-client.ts";
import { connectImageServices, importArchive, mountImage, unmountImage } from "../core/image/index.ts";
import { buildBusyboxImage } from "../test/fixtures/busybox-image.ts";
import { descriptor, layoutEntries, tarOf } from "../test/fixtures/archives.ts";
import { socketAccepts, waitForSocket } from "../core/socket.ts";
import { runInContainer } from "./demo-container.ts";

const repo = new URL("..", import.meta.url).pathname;
const address = gatewaySocketPath(defaultState);
const namespace = "default";
const imageName = "berth.local/library/busybox:latest";

const step = (text: string) => console.log(`\n==> ${text}`);

async function ensureDaemon(): Promise<void> {
  if (await socketAccepts(address)) {
    console.log(`berthd is already running (${address})`);
    return;
  }
  mkdirSync(defaultRoot, { recursive: true, mode: 0o711 });
  const logFile = join(defaultRoot, "berthd.log");
  const out = openSync(logFile, "a");
  const child = spawn(process.execPath, [join(repo, "dist", "berthd.js")], { detached: true, stdio: ["ignore", out, out] });
  child.unref();
  if (!(await waitForSocket(address, 20_000))) throw new Error(`berthd did not start; see ${logFile}`);
  console.log(`started berthd (pid ${child.pid}) with root ${defaultRoot} and state ${defaultState}; log: ${logFile}`);
  console.log(`stop it with: kill ${child.pid}`);
}

async function main(): Promise<void> {
  step("1. daemon");
  await ensureDaemon();
  const version = await grpcClient(VersionDefinition, address).version({});
  console.log(`server version ${version.version} on ${address}`);

  step("2. build a busybox image from /bin/busybox (busybox-static), as an OCI archive");
  const image = await buildBusyboxImage();
  for (const blob of image.blobs) console.log(`${blob.mediaType}  ${blob.digest}  ${blob.size} bytes`);
  const archive = await tarOf(
    layoutEntries(image.blobs, [descriptor(image.manifest, { annotations: { "io.containerd.image.name": imageName } })]),
  );

  step(`3. import it (content, images) and unpack it (snapshots, diff) as ${imageName}`);
  const svc = connectImageServices(address, namespace);
  const imported = await importArchive(svc, Readable.from([archive]), { unpack: true });
  for (const img of imported.images) console.log(`imported ${img.name} (${img.target.digest})`);
  const listing = spawnSync(process.execPath, [join(repo, "dist", "berthctl.js"), "--address", address, "images", "ls"], { encoding: "utf8" });
  process.stdout.write(listing.status === 0 ? listing.stdout : `(berthctl images ls failed: ${listing.stderr.trim()})\n`);

  step("4. mount its root filesystem (a read-only overlay view of the unpacked snapshot)");
  const target = mkdtempSync(join(tmpdir(), "berth-demo-rootfs-"));
  try {
    await mountImage(svc, imageName, target);
    console.log(`${target}/bin: ${readdirSync(join(target, "bin")).join(" ")}`);
  } finally {
    await unmountImage(svc, target, { remove: true });
    rmSync(target, { recursive: true, force: true });
  }

  step("5. run a container from it");
  const { plugins } = await grpcClient(IntrospectionDefinition, address).plugins({ filters: [] });
  const missing = ["containers", "tasks"].filter((id) => !plugins.some((p) => p.id === id && !p.initErr));
  if (missing.length > 0) {
    console.log(`not yet: running containers needs the ${missing.join(" and ")} services, which Berth does not have yet.`);
    console.log(`Furthest step that works: the image is imported, unpacked and mountable (try: ctr --address ${address} images mount ${imageName} /mnt).`);
    return;
  }
  const diffIds = (JSON.parse(image.config.data.toString("utf8")) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
  const args = ["echo", "hello from a Berth container"];
  const ran = await runInContainer(address, namespace, imageName, diffIds, args);
  console.log(`$ ${args.join(" ")}  (exit status ${ran.exitStatus})`);
  process.stdout.write(ran.output);
  console.log(`(the same with ctr: ctr --address ${address} run --rm ${imageName} hello echo hi)`);

  step("6. the same through the Docker Engine API, with the berth CLI (docker's verbs)");
  const host = `unix://${join(defaultState, "docker.sock")}`;
  const berth = (args: string[], input?: Buffer) =>
    spawnSync(process.execPath, [join(repo, "dist", "berth.js"), "-H", host, ...args], { input, encoding: "utf8", stdio: [input ? "pipe" : "ignore", "pipe", "pipe"] });
  const loaded = berth(["load"], archive);
  if (loaded.status !== 0) throw new Error(`berth load: ${loaded.stderr.trim()}`);
  process.stdout.write(loaded.stdout);
  const engineArgs = ["run", "--rm", imageName, "echo", "hello from a container the Engine API ran"];
  const engineRun = berth(engineArgs);
  console.log(`$ berth ${engineArgs.join(" ")}  (exit status ${engineRun.status})`);
  process.stdout.write(engineRun.stdout + engineRun.stderr);
  console.log(`(the same with the docker CLI: DOCKER_HOST=${host} docker run --rm ${imageName} echo hi)`);
}

main()
  .catch((err: Error) => {
    console.error(`demo failed: ${err.message}`);
    process.exitCode = 1;
  })
  .finally(() => process.exit());
