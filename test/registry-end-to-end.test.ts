// A locally built busybox image travels through real docker-registry instances from one
// daemon to another with a fresh root, and runs there: over plain HTTP, over TLS with a
// test CA and client certificate (certs.d), with htpasswd Basic auth, and with bearer
// tokens. The real ctr pushes and pulls through Berth's gateway as well (it drives the
// content Writer and the images service itself), and each side pulls what the other
// pushed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { distDir, ok, runAsync, startDaemon, tableRows, type Daemon } from "./harness.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import { TestRegistry, TokenServer, makePki, storeImage, writeHtpasswd } from "./fixtures/registry.ts";
import { removeNamespaceLeftovers } from "./fixtures/namespace-leftovers.ts";

const local = "docker.io/library/busybox:latest";
// ctr's default spec puts a container in the cgroup /<namespace>/<id>: unique per run.
const suffix = randomBytes(3).toString("hex");
const namespaces: string[] = [];
let work: string;
let busybox: BuiltImage;
/** The daemon that pushes, and the one with a fresh root that pulls and runs. */
let source: Daemon;
let fresh: Daemon;
let plain: TestRegistry;
let tlsRegistry: TestRegistry;
let basicRegistry: TestRegistry;
let tokenRegistry: TestRegistry;
const stops: (() => Promise<void>)[] = [];

function namespace(name: string): string {
  const ns = `${name}-${suffix}`;
  namespaces.push(ns);
  return ns;
}

// Asynchronous, and checked: the token server answers from this process.
const berthctl = async (d: Daemon, ns: string, args: string[]) =>
  ok(await runAsync(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", ns, ...args]), `berthctl ${args[0]}`);
const ctr = async (d: Daemon, ns: string, args: string[]) => ok(await runAsync("ctr", ["--address", d.address, "--namespace", ns, ...args]), `ctr ${args.slice(0, 2).join(" ")}`);

/** Pulls `ref` into a new namespace of the fresh daemon and runs it there; the pulled image's digest. */
async function pullAndRun(name: string, ref: string, pullArgs: string[] = []): Promise<string> {
  const ns = namespace(name);
  const pulled = await berthctl(fresh, ns, ["pull", ...pullArgs, ref]);
  const [row] = tableRows(pulled.stdout.slice(pulled.stdout.indexOf("REF")));
  assert.equal(row!.at(-1), "true", `unpacked:\n${pulled.stdout}`);
  await expectRuns(ns, ref, name);
  return row![2]!;
}

async function expectRuns(ns: string, ref: string, name: string): Promise<void> {
  const ran = await ctr(fresh, ns, ["run", "--rm", ref, name, "sh", "-c", "echo ran $0 on $(uname -s)", name]);
  assert.equal(ran.stdout, `ran ${name} on Linux\n`);
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-registry-e2e-"));
  busybox = await buildBusyboxImage();
  const pki = makePki(join(work, "pki"));
  const htpasswd = join(work, "htpasswd");
  writeHtpasswd(htpasswd, "alice", "s3cret");
  const tokens = await TokenServer.start(join(work, "token"), { bob: "hunter2" });
  stops.push(() => tokens.stop());
  const registries = await Promise.all([
    TestRegistry.start(join(work, "plain")),
    TestRegistry.start(join(work, "tls"), { tls: { certificate: pki.serverCert, key: pki.serverKey, clientCas: [pki.caCert] } }),
    TestRegistry.start(join(work, "basic"), { auth: { htpasswd } }),
    TestRegistry.start(join(work, "token-registry"), { auth: { token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, rootCertBundle: tokens.certFile } } }),
  ]);
  for (const r of registries) stops.push(() => r.stop());
  [plain, tlsRegistry, basicRegistry, tokenRegistry] = registries as [TestRegistry, TestRegistry, TestRegistry, TestRegistry];

  // Both daemons trust the test CA and present the client certificate to the TLS registry.
  const certsDir = join(work, "certs.d");
  const hostDir = join(certsDir, tlsRegistry.host);
  mkdirSync(hostDir, { recursive: true });
  copyFileSync(pki.caCert, join(hostDir, "ca.crt"));
  copyFileSync(pki.clientCert, join(hostDir, "client.cert"));
  copyFileSync(pki.clientKey, join(hostDir, "client.key"));
  const config = join(work, "berthd.json");
  writeFileSync(config, JSON.stringify({ registry: { certsDir } }));
  [source, fresh] = await Promise.all([startDaemon({ args: ["--config", config] }), startDaemon({ args: ["--config", config] })]);
  await storeImage(connectImageServices(source.address, "default"), busybox.blobs, local, busybox.manifest);
});

after(async () => {
  closeChannels();
  for (const ns of namespaces) removeNamespaceLeftovers(fresh, ns);
  await Promise.all([source?.destroy(), fresh?.destroy()]);
  for (const stop of stops.reverse()) await stop();
  rmSync(work, { recursive: true, force: true });
});

test("over plain HTTP: pushed, pulled into a fresh root with the same digest, run", async () => {
  const ref = `${plain.host}/e2e/busybox:1`;
  await berthctl(source, "default", ["push", "--plain-http", ref, local]);
  assert.equal(await pullAndRun("plain", ref, ["--plain-http"]), busybox.manifest.digest);
});

test("over TLS with the test CA and a client certificate from certs.d", async () => {
  const ref = `${tlsRegistry.host}/e2e/busybox:1`;
  await berthctl(source, "default", ["push", ref, local]);
  assert.equal(await pullAndRun("tls", ref), busybox.manifest.digest);
});

test("with htpasswd Basic auth (--user); without credentials the pull is refused", async () => {
  const ref = `${basicRegistry.host}/e2e/busybox:1`;
  await berthctl(source, "default", ["push", "--user", "alice:s3cret", ref, local]);
  const refused = await runAsync(process.execPath, [join(distDir, "berthctl.js"), "--address", fresh.address, "--namespace", namespace("basic-anon"), "pull", ref]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /unauthorized/);
  assert.equal(await pullAndRun("basic", ref, ["--user", "alice:s3cret"]), busybox.manifest.digest);
});

test("with bearer tokens from a token server", async () => {
  const ref = `${tokenRegistry.host}/e2e/busybox:1`;
  await berthctl(source, "default", ["push", "--user", "bob:hunter2", ref, local]);
  assert.equal(await pullAndRun("token", ref, ["--user", "bob:hunter2"]), busybox.manifest.digest);
});

test("the real ctr pushes and pulls through Berth's gateway; berthctl and ctr each pull what the other pushed", async () => {
  const byCtr = `${plain.host}/e2e/by-ctr:1`;
  await ctr(source, "default", ["images", "push", "--plain-http", byCtr, local]);
  assert.equal(await pullAndRun("from-ctr", byCtr, ["--plain-http"]), busybox.manifest.digest);

  const byBerth = `${plain.host}/e2e/by-berth:1`;
  await berthctl(source, "default", ["push", "--plain-http", byBerth, local]);
  const ns = namespace("ctr-pull");
  await ctr(fresh, ns, ["images", "pull", "--plain-http", byBerth]);
  const [image] = tableRows((await ctr(fresh, ns, ["images", "ls"])).stdout);
  assert.deepEqual(image!.slice(0, 3), [byBerth, busybox.manifest.mediaType, busybox.manifest.digest]);
  await expectRuns(ns, byBerth, "ctr-pull");
});
