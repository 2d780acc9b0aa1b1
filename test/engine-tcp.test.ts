// The Engine API over TCP: mutual TLS by default (the docker CLI with a client certificate
// gets in, without one it does not), plain TCP refused at start unless forced.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, startDaemon, type Daemon } from "./harness.ts";
import { freePort, makePki, type TestPki } from "./fixtures/registry.ts";

let workdir: string;
let pki: TestPki;
const daemons: Daemon[] = [];

before(() => {
  workdir = mkdtempSync(join(tmpdir(), "berth-engine-tcp-"));
  pki = makePki(join(workdir, "pki"));
});
after(async () => {
  for (const d of daemons) await d.destroy();
  rmSync(workdir, { recursive: true, force: true });
});

async function daemonWith(args: string[]): Promise<Daemon> {
  const d = await startDaemon({ args });
  daemons.push(d);
  return d;
}

test("with mutual TLS the docker CLI gets in with a client certificate, and not without one", async () => {
  const port = await freePort();
  const d = await daemonWith(["--engine-host", `tcp://127.0.0.1:${port}`, "--tlscacert", pki.caCert, "--tlscert", pki.serverCert, "--tlskey", pki.serverKey]);
  const host = ["-H", `tcp://127.0.0.1:${port}`, "--tlsverify", "--tlscacert", pki.caCert];
  const version = ok(d.docker([...host, "--tlscert", pki.clientCert, "--tlskey", pki.clientKey, "version", "--format", "{{.Server.APIVersion}}"]), "docker version over mTLS");
  assert.equal(version.stdout.trim(), "1.41");
  const refused = d.docker([...host, "version", "--format", "{{.Server.APIVersion}}"]);
  assert.notEqual(refused.code, 0, "a client without a certificate is refused");
  assert.match(refused.stderr, /certificate|tls|handshake/i);
  // docker.sock is still served beside it.
  assert.equal(ok(d.docker(["version", "--format", "{{.Server.APIVersion}}"]), "docker version on docker.sock").stdout.trim(), "1.41");
});

test("plain TCP is refused at start, naming why and how to force it; forced, it serves", async () => {
  const port = await freePort();
  await assert.rejects(daemonWith(["--engine-host", `tcp://127.0.0.1:${port}`]), /refusing to serve the Engine API on tcp:\/\/127\.0\.0\.1:\d+ without TLS.*--engine-insecure-tcp/s);
  await assert.rejects(daemonWith(["--engine-host", `tcp://127.0.0.1:${port}`, "--tlscert", pki.serverCert]), /needs all of --tlscacert, --tlscert and --tlskey/);
  await assert.rejects(daemonWith(["--engine-host", "127.0.0.1"]), /expected tcp:\/\/HOST:PORT/);
  const d = await daemonWith(["--engine-host", `tcp://127.0.0.1:${port}`, "--engine-insecure-tcp"]);
  assert.equal(ok(d.docker(["-H", `tcp://127.0.0.1:${port}`, "version", "--format", "{{.Server.APIVersion}}"]), "docker version over plain TCP").stdout.trim(), "1.41");
});
