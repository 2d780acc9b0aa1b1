// The distribution client's auth and transport against real docker-registry
// instances: htpasswd Basic auth, Bearer tokens from a token server of our own
// (`auth: token`), credentials from config.json and from a docker-credential helper,
// login/logout, and TLS with a test CA and client certificates from certs.d.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, copyFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { distDir, runAsync, startDaemon, type Daemon } from "./harness.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { BerthError } from "../core/errors.ts";
import { connectImageServices } from "../core/image/connect.ts";
import type { ImageServices } from "../core/image/services.ts";
import { RegistryClient, getCredentials, login, logout, storeCredentials, parseRegistryReference, pullImage, pushBlob, pushImage, pushManifest, resolve, type RegistryClientOptions } from "../core/registry/index.ts";
import { registryClient } from "../core/registry/access.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import { blobOf, imageFromLayers, tarOf } from "./fixtures/archives.ts";
import { mediaTypes } from "../core/image/media-types.ts";
import { sha256Digest } from "../core/digest.ts";
import { TestRegistry, TokenServer, makePki, storeImage, writeCredentialHelper, writeHtpasswd, type TestPki } from "./fixtures/registry.ts";

let d: Daemon;
let work: string;
let busybox: BuiltImage;
let pki: TestPki;
const clients: RegistryClient[] = [];
const stops: (() => Promise<void>)[] = [];
const originalPath = process.env.PATH;

function client(options: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ certsDir: join(work, "no-certs"), dockerConfig: join(work, "no-config.json"), retry: { attempts: 2, baseDelayMs: 5 }, ...options });
  clients.push(c);
  return c;
}

const ns = (namespace: string): ImageServices => connectImageServices(d.address, namespace);

function unauthorized(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, String(err));
    assert.equal(err.kind, "failed precondition");
    assert.match(err.message, pattern);
    return true;
  };
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-registry-auth-"));
  busybox = await buildBusyboxImage();
  pki = makePki(join(work, "pki"));
  d = await startDaemon();
  await storeImage(ns("default"), busybox.blobs, "busybox:latest", busybox.manifest);
});

after(async () => {
  process.env.PATH = originalPath;
  for (const c of clients) await c.close();
  closeChannels();
  for (const stop of stops.reverse()) await stop();
  await d?.destroy();
  rmSync(work, { recursive: true, force: true });
});

describe("basic auth (htpasswd) and stored credentials", () => {
  let registry: TestRegistry;
  before(async () => {
    const htpasswd = join(work, "htpasswd");
    writeHtpasswd(htpasswd, "alice", "s3cret");
    registry = await TestRegistry.start(join(work, "basic"), { auth: { htpasswd } });
    stops.push(() => registry.stop());
  });

  test("without credentials the registry's challenge ends in a clear unauthorized error", async () => {
    await assert.rejects(pushImage(client(), ns("default"), "busybox:latest", `${registry.host}/basic/busybox:1`), unauthorized(/^unauthorized: .*wants a user name and password, and there are no credentials for 127\.0\.0\.1:\d+/));
  });

  test("credentials from config.json `auths` (base64 user:password) push and pull", async () => {
    const config = join(work, "basic-config.json");
    writeFileSync(config, JSON.stringify({ auths: { [`https://${registry.host}`]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
    const pushed = await pushImage(client({ dockerConfig: config }), ns("default"), "busybox:latest", `${registry.host}/basic/busybox:1`);
    assert.equal(pushed.uploaded.length, 2);
    const pulled = await pullImage(client({ dockerConfig: config }), ns("basic"), `${registry.host}/basic/busybox:1`);
    assert.equal(pulled.image.root.digest, busybox.manifest.digest);
  });

  test("a wrong password is refused once, not in a loop", async () => {
    await assert.rejects(resolve(client({ credentials: async () => ({ username: "alice", password: "wrong" }) }), `${registry.host}/basic/busybox:1`), unauthorized(/^unauthorized: GET http:\/\/.*: 401 Unauthorized.*the registry refused the credentials/));
  });

  test("login checks the credentials, then writes config.json atomically with mode 0600; logout removes them", async () => {
    const dir = join(work, "login");
    const config = join(dir, "config.json");
    await assert.rejects(login(registry.host, { username: "alice", password: "nope" }, { configPath: config, certsDir: join(work, "no-certs") }), /login to 127\.0\.0\.1:\d+ failed: unauthorized/);
    assert.equal(existsSync(config), false, "a failed login writes nothing");

    mkdirSync(dir, { recursive: true });
    writeFileSync(config, JSON.stringify({ auths: { "other.example": { auth: "eDp5" } }, psFormat: "table" }));
    await login(registry.host, { username: "alice", password: "s3cret" }, { configPath: config, certsDir: join(work, "no-certs") });
    assert.equal(statSync(config).mode & 0o777, 0o600);
    const written = JSON.parse(readFileSync(config, "utf8"));
    assert.deepEqual(written, { auths: { "other.example": { auth: "eDp5" }, [registry.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } }, psFormat: "table" });
    assert.deepEqual(await getCredentials(registry.host, { configPath: config }), { username: "alice", password: "s3cret" });
    const image = await resolve(client({ dockerConfig: config }), `${registry.host}/basic/busybox:1`);
    assert.equal(image.root.digest, busybox.manifest.digest);

    assert.equal(await logout(registry.host, { configPath: config }), true);
    assert.deepEqual(JSON.parse(readFileSync(config, "utf8")).auths, { "other.example": { auth: "eDp5" } });
    assert.equal(await logout(registry.host, { configPath: config }), false);
  });

  test("credentials from a docker-credential helper (credsStore), stored and erased through it", async () => {
    const bin = join(work, "bin");
    const secrets = join(work, "helper-secrets.json");
    writeCredentialHelper(bin, "berthtest", secrets, true);
    process.env.PATH = `${bin}:${originalPath}`;
    const config = join(work, "helper", "config.json");
    mkdirSync(join(work, "helper"));
    writeFileSync(config, JSON.stringify({ credsStore: "berthtest" }));

    assert.equal(await getCredentials(registry.host, { configPath: config }), undefined, "the helper has nothing yet");
    await login(registry.host, { username: "alice", password: "s3cret" }, { configPath: config, certsDir: join(work, "no-certs") });
    assert.deepEqual(JSON.parse(readFileSync(config, "utf8")), { credsStore: "berthtest", auths: { [registry.host]: {} } }, "the secret lives in the helper, not the file");
    assert.equal(JSON.parse(readFileSync(secrets, "utf8"))[registry.host].Secret, "s3cret");

    const pulled = await pullImage(client({ dockerConfig: config }), ns("helper"), `${registry.host}/basic/busybox:1`);
    assert.equal(pulled.image.root.digest, busybox.manifest.digest);

    assert.equal(await logout(registry.host, { configPath: config }), true);
    assert.deepEqual(JSON.parse(readFileSync(secrets, "utf8")), {});
    assert.deepEqual(readFileSync(`${secrets}.log`, "utf8").trim().split("\n"), [`get ${registry.host}`, `store ${registry.host}`, `get ${registry.host}`, `erase ${registry.host}`]);

    // credHelpers names a helper for one registry, ahead of credsStore; a missing helper is a clear error.
    writeFileSync(config, JSON.stringify({ credsStore: "berthtest", credHelpers: { [registry.host]: "absent" } }));
    await assert.rejects(getCredentials(registry.host, { configPath: config }), /credential helper docker-credential-absent: spawn docker-credential-absent ENOENT/);
  });

  test("Docker Hub's credentials live under its historic key", async () => {
    const config = join(work, "hub", "config.json");
    await storeCredentials("docker.io", { username: "hubuser", password: "hubpass" }, { configPath: config });
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(config, "utf8")).auths), ["https://index.docker.io/v1/"]);
    assert.deepEqual(await getCredentials("docker.io", { configPath: config }), { username: "hubuser", password: "hubpass" });
    assert.equal(await getCredentials("index.docker.io.example", { configPath: config }), undefined);
  });

  test("a config.json that is not JSON is named in the error", async () => {
    const config = join(work, "broken.json");
    writeFileSync(config, "{ not json");
    await assert.rejects(getCredentials(registry.host, { configPath: config }), (err: unknown) => err instanceof BerthError && err.kind === "invalid argument" && err.message.startsWith(`${config}: invalid JSON`));
  });
});

describe("bearer tokens (auth: token)", () => {
  let registry: TestRegistry;
  let tokens: TokenServer;
  const users = { bob: "hunter2" };
  const asBob = async () => ({ username: "bob", password: "hunter2" });
  before(async () => {
    tokens = await TokenServer.start(join(work, "token"), users);
    stops.push(() => tokens.stop());
    registry = await TestRegistry.start(join(work, "token-registry"), {
      auth: { token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, rootCertBundle: tokens.certFile } },
    });
    stops.push(() => registry.stop());
  });

  test("push and pull with tokens for the right scopes, each token reused while it lasts", async () => {
    const c = client({ credentials: asBob });
    const pushed = await pushImage(c, ns("default"), "busybox:latest", `${registry.host}/tokens/busybox:1`);
    assert.equal(pushed.uploaded.length, 2);
    assert.equal(c.auth.tokenRequests, 1, `one token for every request of the push: ${JSON.stringify(tokens.requests)}`);
    assert.deepEqual(tokens.requests.at(-1), { account: "bob", scopes: ["repository:tokens/busybox:pull,push"] });

    const pulled = await pullImage(c, ns("tokens"), `${registry.host}/tokens/busybox:1`);
    assert.equal(pulled.image.root.digest, busybox.manifest.digest);
    assert.equal(c.auth.tokenRequests, 2, "a pull scope needs its own token");
    await resolve(c, `${registry.host}/tokens/busybox:1`);
    assert.equal(c.auth.tokenRequests, 2, "and reuses it");

    // A mount asks for pull on the source repository as well.
    const mounted = await pushImage(c, ns("tokens"), `${registry.host}/tokens/busybox:1`, `${registry.host}/tokens/copy:1`);
    assert.equal(mounted.mounted.length, 2);
    assert.ok(tokens.requests.some((r) => r.scopes.includes("repository:tokens/busybox:pull") && r.scopes.includes("repository:tokens/copy:pull,push")));
  });

  test("a daemon's pull asks for a token once in each process, not once per blob", async () => {
    // An image whose blobs the daemon's store has never seen: each is downloaded.
    const tars = await Promise.all([1, 2].map((i) => tarOf([{ name: `f${i}`, data: randomBytes(1000) }])));
    const image = imageFromLayers(tars.map((t) => blobOf(mediaTypes.ociLayer, t)), tars.map((t) => sha256Digest(t)));
    const c = client({ credentials: asBob });
    const ref = parseRegistryReference(`${registry.host}/tokens/fresh:1`);
    for (const b of [image.config, ...image.layers]) await pushBlob(c, ref, b, (async function* () { yield b.data; })());
    await pushManifest(c, ref, "1", image.manifest, image.manifest.data);
    const before = tokens.requests.length;
    // Not d.berthctl: the token server runs in this process, which must go on serving it.
    const r = await runAsync(process.execPath, [join(distDir, "berthctl.js"), "--address", d.address, "--namespace", "daemon-tokens", "pull", "--plain-http", "--user", "bob:hunter2", `${registry.host}/tokens/fresh:1`]);
    assert.equal(r.code, 0, r.stderr);
    const asked = tokens.requests.slice(before);
    // The jobs process resolves; the content process fetches the config and the two
    // layers, each with a client of its own, sharing one token.
    assert.equal(asked.length, 2, JSON.stringify(asked));
    assert.ok(asked.every((a) => a.account === "bob"), JSON.stringify(asked));
  });

  test("an identity token (OAuth2 refresh token) is exchanged with a form POST", async () => {
    tokens.refreshTokens["refresh-for-bob"] = "bob";
    const c = client({ credentials: async () => ({ username: "", password: "", identityToken: "refresh-for-bob" }) });
    const image = await resolve(c, `${registry.host}/tokens/busybox:1`);
    assert.equal(image.root.digest, busybox.manifest.digest);
    assert.deepEqual(tokens.requests.at(-1), { account: "bob", scopes: ["repository:tokens/busybox:pull"], oauth: true });
    await assert.rejects(resolve(client({ credentials: async () => ({ username: "", password: "", identityToken: "revoked" }) }), `${registry.host}/tokens/busybox:1`), unauthorized(/^unauthorized: POST http:\/\/127\.0\.0\.1:\d+\/token: 401 Unauthorized/));
  });

  test("a token past its expiry is not reused", async () => {
    tokens.backdateAnswer = 3600;
    try {
      const c = client({ credentials: asBob });
      await resolve(c, `${registry.host}/tokens/busybox:1`);
      await resolve(c, `${registry.host}/tokens/busybox:1`);
      assert.equal(c.auth.tokenRequests, 2);
    } finally {
      tokens.backdateAnswer = 0;
    }
  });

  test("anonymous callers get a token without access: one retry, then unauthorized", async () => {
    const before = tokens.requests.length;
    const c = client({ credentials: async () => undefined });
    await assert.rejects(resolve(c, `${registry.host}/tokens/busybox:1`), unauthorized(/^unauthorized: GET http:\/\/127\.0\.0\.1:\d+\/v2\/tokens\/busybox\/manifests\/1: 401 Unauthorized: UNAUTHORIZED: .*refused the credentials/));
    assert.equal(tokens.requests.length - before, 1);
  });

  test("a wrong password is refused by the token endpoint", async () => {
    await assert.rejects(resolve(client({ credentials: async () => ({ username: "bob", password: "wrong" }) }), `${registry.host}/tokens/busybox:1`), unauthorized(/^unauthorized: GET http:\/\/127\.0\.0\.1:\d+\/token\?.*: 401 Unauthorized/));
  });
});

describe("TLS with certs.d", () => {
  let registry: TestRegistry;
  let certsDir: string;
  before(async () => {
    registry = await TestRegistry.start(join(work, "tls-registry"), { tls: { certificate: pki.serverCert, key: pki.serverKey, clientCas: [pki.caCert] } });
    stops.push(() => registry.stop());
    certsDir = join(work, "certs.d");
    const hostDir = join(certsDir, registry.host);
    mkdirSync(hostDir, { recursive: true });
    copyFileSync(pki.caCert, join(hostDir, "ca.crt"));
    copyFileSync(pki.clientCert, join(hostDir, "client.cert"));
    copyFileSync(pki.clientKey, join(hostDir, "client.key"));
  });

  test("the test CA and a client certificate from certs.d/<host:port>/ push and pull over HTTPS", async () => {
    const c = client({ certsDir });
    const pushed = await pushImage(c, ns("default"), "busybox:latest", `${registry.host}/tls/busybox:1`);
    assert.equal(pushed.uploaded.length + pushed.mounted.length + pushed.existed.length, 2);
    const pulled = await pullImage(c, ns("tls"), `${registry.host}/tls/busybox:1`);
    assert.equal(pulled.image.root.digest, busybox.manifest.digest);
  });

  test("an untrusted server certificate is a clear TLS error, not masked by a plain-HTTP retry", async () => {
    await assert.rejects(resolve(client(), `${registry.host}/tls/busybox:1`), (err: unknown) => {
      assert.ok(err instanceof BerthError);
      assert.equal(err.kind, "failed precondition");
      assert.match(err.message, /^GET https:\/\/127\.0\.0\.1:\d+\/v2\/tls\/busybox\/manifests\/1: TLS certificate not trusted: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
      return true;
    });
  });

  test("without the client certificate the handshake is refused, and the error says so", async () => {
    const caOnly = join(work, "ca-only");
    mkdirSync(join(caOnly, registry.host), { recursive: true });
    copyFileSync(pki.caCert, join(caOnly, registry.host, "ca.crt"));
    await assert.rejects(resolve(client({ certsDir: caOnly }), `${registry.host}/tls/busybox:1`), (err: unknown) => {
      assert.ok(err instanceof BerthError, String(err));
      assert.match(err.message, /^GET https:\/\/.*TLS handshake refused by the server \(does it want a client certificate\?\)/);
      return true;
    });
  });

  test("a registry configured insecure is reached over TLS without verifying its certificate", async () => {
    const clientOnly = join(work, "client-only");
    mkdirSync(join(clientOnly, registry.host), { recursive: true });
    copyFileSync(pki.clientCert, join(clientOnly, registry.host, "client.cert"));
    copyFileSync(pki.clientKey, join(clientOnly, registry.host, "client.key"));
    const image = await resolve(client({ certsDir: clientOnly, insecure: [registry.host] }), `${registry.host}/tls/busybox:1`);
    assert.equal(image.root.digest, busybox.manifest.digest);
  });

  test("plain HTTP is tried only for insecure and loopback registries", () => {
    const c = client({ insecure: ["insecure.example:5000", "bare.example"] });
    assert.deepEqual(c.hosts.schemesFor("registry.example:5000"), ["https"]);
    assert.deepEqual(c.hosts.schemesFor("insecure.example:5000"), ["https", "http"]);
    assert.deepEqual(c.hosts.schemesFor("bare.example:443"), ["https", "http"], "a host named without a port covers every port");
    for (const loopback of ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000"]) assert.deepEqual(c.hosts.schemesFor(loopback), ["https", "http"], loopback);
    assert.deepEqual(c.endpoints("docker.io", "pull").map((e) => e.host), ["registry-1.docker.io"]);
  });

  test("a plain-HTTP registry (ctr's --plain-http) is reached over HTTP at once, loopback or not", () => {
    const c = client({ plainHttp: ["127.0.0.1:5000", "plain.example:5000"] });
    assert.deepEqual(c.hosts.schemesFor("127.0.0.1:5000"), ["http"]);
    assert.deepEqual(c.hosts.schemesFor("plain.example:5000"), ["http"]);
    assert.deepEqual(c.hosts.schemesFor("127.0.0.1:5001"), ["https", "http"], "only the host named");
    assert.deepEqual(registryClient({ plainHttp: true, insecure: false }, "127.0.0.1:5000").hosts.schemesFor("127.0.0.1:5000"), ["http"]);
    assert.deepEqual(registryClient({ plainHttp: false, insecure: true }, "insecure.example:5000").hosts.schemesFor("insecure.example:5000"), ["https", "http"]);
  });

  test("a client certificate without its key is refused, naming the file", async () => {
    const broken = join(work, "broken-certs");
    mkdirSync(join(broken, registry.host), { recursive: true });
    copyFileSync(pki.clientCert, join(broken, registry.host, "client.cert"));
    assert.throws(() => client({ certsDir: broken }).hosts.agentFor(registry.host), (err: unknown) => err instanceof BerthError && err.kind === "invalid argument" && err.message.includes(`${registry.host}/client.cert: client certificate without its key client.key`));
  });
});
