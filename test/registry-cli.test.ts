// berthctl's registry commands against a real berthd and Debian's docker-registry with
// htpasswd auth: login checks the password before writing config.json (mode 0600,
// base64 user:pass, or through a docker-credential helper), pull and push then use
// the stored credentials, logout removes them; bad input is refused and writes nothing.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { distDir, ok, run, startDaemon, tableRows, type Daemon } from "./harness.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { connectImageServices } from "../core/image/connect.ts";
import { buildBusyboxImage, type BuiltImage } from "./fixtures/busybox-image.ts";
import { TestRegistry, makePki, storeImage, writeCredentialHelper, writeHtpasswd } from "./fixtures/registry.ts";

let d: Daemon;
let work: string;
let busybox: BuiltImage;
let registry: TestRegistry;
const stops: (() => Promise<void>)[] = [];
const saved = { DOCKER_CONFIG: process.env.DOCKER_CONFIG, PATH: process.env.PATH };

function restoreEnv(): void {
  for (const [key, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
}

/** A fresh Docker config dir for berthctl (it reads DOCKER_CONFIG from the environment it inherits). */
function useConfigDir(name: string): string {
  const dir = join(work, name);
  process.env.DOCKER_CONFIG = dir;
  return join(dir, "config.json");
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-registry-cli-"));
  busybox = await buildBusyboxImage();
  d = await startDaemon();
  await storeImage(connectImageServices(d.address, "default"), busybox.blobs, "docker.io/library/busybox:latest", busybox.manifest);
  const htpasswd = join(work, "htpasswd");
  writeHtpasswd(htpasswd, "alice", "s3cret");
  registry = await TestRegistry.start(join(work, "registry"), { auth: { htpasswd } });
});

after(async () => {
  restoreEnv();
  closeChannels();
  for (const stop of stops.reverse()) await stop();
  await registry?.stop();
  await d?.destroy();
  rmSync(work, { recursive: true, force: true });
});

describe("berthctl login / logout", () => {
  test("a wrong password is an error naming the registry, and writes nothing", () => {
    const config = useConfigDir("wrong");
    const r = d.berthctl(["login", "--username", "alice", "--password-stdin", registry.host], "nope\n");
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`^berthctl: login to ${registry.host.replace(/\./g, "\\.")} failed: unauthorized: GET http://${registry.host.replace(/\./g, "\\.")}/v2/: 401 Unauthorized`));
    assert.equal(existsSync(config), false);
  });

  test("bad flags are refused before anything is asked or written", () => {
    const config = useConfigDir("flags");
    const noUser = d.berthctl(["login", "--password-stdin", registry.host], "s3cret\n");
    assert.equal(noUser.code, 1);
    assert.equal(noUser.stderr, "berthctl: must provide --username with --password-stdin\n");
    const both = d.berthctl(["login", "-u", "alice", "-p", "x", "--password-stdin", registry.host], "s3cret\n");
    assert.equal(both.stderr, "berthctl: --password and --password-stdin are mutually exclusive\n");
    const noTty = d.berthctl(["login", registry.host]);
    assert.equal(noTty.stderr, "berthctl: cannot perform an interactive login from a non TTY device: use --username and --password-stdin\n");
    const empty = d.berthctl(["login", "-u", "alice", "--password-stdin", registry.host], "\n");
    assert.equal(empty.stderr, "berthctl: password is empty\n");
    const server = d.berthctl(["login", "-u", "alice", "--password-stdin", "https://bad host/"], "s3cret\n");
    assert.equal(server.stderr, 'berthctl: invalid registry address "https://bad host/": expected host[:port]\n');
    assert.equal(existsSync(config), false);
  });

  test("login writes auths[host].auth (base64 user:pass, mode 0600, other keys kept); pull and push use it; logout removes it", () => {
    const config = useConfigDir("plain");
    mkdirSync(join(work, "plain"));
    writeFileSync(config, JSON.stringify({ auths: { "other.example": { auth: "eDp5" } }, psFormat: "table" }));
    const r = ok(d.berthctl(["login", "--username", "alice", "--password-stdin", `https://${registry.host}/v2/`], "s3cret\n"), "login");
    assert.equal(r.stdout, "Login Succeeded\n");
    assert.equal(statSync(config).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(readFileSync(config, "utf8")), {
      auths: { "other.example": { auth: "eDp5" }, [registry.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } },
      psFormat: "table",
    });

    const remote = `${registry.host}/cli/busybox:1`;
    ok(d.berthctl(["push", remote, "docker.io/library/busybox:latest"]), "push with the stored credentials");
    const pulled = ok(d.berthctl(["pull", remote], undefined, "pulled"), "pull with the stored credentials");
    const [row] = tableRows(pulled.stdout.slice(pulled.stdout.indexOf("REF")));
    assert.deepEqual(row!.slice(0, 3), [remote, busybox.manifest.mediaType, busybox.manifest.digest]);

    assert.equal(ok(d.berthctl(["logout", registry.host]), "logout").stdout, `Removing login credentials for ${registry.host}\n`);
    assert.deepEqual(JSON.parse(readFileSync(config, "utf8")).auths, { "other.example": { auth: "eDp5" } });
    assert.equal(ok(d.berthctl(["logout", registry.host])).stdout, `Not logged in to ${registry.host}\n`);
    const refused = d.berthctl(["pull", remote], undefined, "refused");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^berthctl: unauthorized: .*no credentials for 127\.0\.0\.1:\d+/);
  });

  test("with credsStore, login stores through docker-credential-<store> and the file keeps an empty entry", () => {
    const config = useConfigDir("helper");
    const bin = join(work, "bin");
    const secrets = join(work, "helper-secrets.json");
    writeCredentialHelper(bin, "berthcli", secrets);
    process.env.PATH = `${bin}:${saved.PATH}`;
    mkdirSync(join(work, "helper"));
    writeFileSync(config, JSON.stringify({ credsStore: "berthcli" }));

    const wrong = d.berthctl(["login", "-u", "alice", "--password-stdin", registry.host], "bad\n");
    assert.equal(wrong.code, 1);
    assert.equal(existsSync(secrets), false, "a refused login stores nothing in the helper");

    ok(d.berthctl(["login", "-u", "alice", "--password-stdin", registry.host], "s3cret\n"), "login");
    assert.deepEqual(JSON.parse(readFileSync(config, "utf8")), { credsStore: "berthcli", auths: { [registry.host]: {} } });
    assert.deepEqual(JSON.parse(readFileSync(secrets, "utf8"))[registry.host], { ServerURL: registry.host, Username: "alice", Secret: "s3cret" });
    ok(d.berthctl(["pull", `${registry.host}/cli/busybox:1`], undefined, "helper"), "pull with the helper's credentials");

    assert.equal(ok(d.berthctl(["logout", registry.host])).stdout, `Removing login credentials for ${registry.host}\n`);
    assert.deepEqual(JSON.parse(readFileSync(secrets, "utf8")), {});
    process.env.PATH = saved.PATH;
  });
});

describe("berthctl images check", () => {
  before(() => useConfigDir("none"));
  const ns = "check";
  const check = (args: string[] = []) => ok(d.berthctl(["images", "check", ...args], undefined, ns), "berthctl images check").stdout;
  const ctrCheck = (args: string[] = []) => ok(d.ctr(["images", "check", ...args], undefined, ns), "ctr images check").stdout;
  const statuses = (text: string) => Object.fromEntries(tableRows(text).map((row) => [row[0], row.slice(3).join(" ")]));

  test("prints what ctr prints: complete and unpacked, complete and not unpacked, then incomplete once a layer blob is gone", () => {
    const remote = `${registry.host}/check/busybox:1`;
    ok(d.berthctl(["push", "--user", "alice:s3cret", remote, "docker.io/library/busybox:latest"]), "push");
    ok(d.berthctl(["pull", "--user", "alice:s3cret", remote], undefined, ns), "pull");
    ok(d.ctr(["images", "tag", remote, "stored:1"], undefined, ns), "tag");

    let mine = check();
    assert.equal(mine, ctrCheck());
    assert.deepEqual(statuses(mine)[remote]!.split(" ").slice(0, 2), ["complete", "(2/2)"]);
    assert.equal(statuses(mine)[remote]!.split(" ").at(-1), "true");
    // Never unpacked into the native snapshotter.
    assert.equal(check(["--snapshotter", "native"]), ctrCheck(["--snapshotter", "native"]));
    assert.equal(statuses(check(["--snapshotter", "native"]))[remote]!.split(" ").at(-1), "false");
    assert.equal(check(["-q"]), `${remote}\nstored:1\n`);
    assert.equal(check(["-q", "name==stored:1"]), "stored:1\n");

    ok(d.ctr(["content", "rm", busybox.layers[0]!.digest], undefined, ns), "content rm");
    mine = check();
    assert.equal(mine, ctrCheck());
    assert.deepEqual(statuses(mine)[remote]!.split(" ").slice(0, 2), ["incomplete", "(1/2)"]);
    assert.equal(check(["-q"]), "", "no image is complete any more");

    // Without its manifest, the image's config (and so its chain id) is unknown too: ctr
    // lists it, then fails on the unpack check.
    ok(d.ctr(["content", "rm", busybox.manifest.digest], undefined, ns), "content rm");
    const gone = d.berthctl(["images", "check"], undefined, ns);
    const ctrGone = d.ctr(["images", "check"], undefined, ns);
    assert.equal(gone.code, 1);
    assert.equal(gone.stdout, ctrGone.stdout);
    assert.deepEqual(statuses(gone.stdout)[remote]!.split(" ").slice(0, 2), ["unavailable", "(0/?)"]);
    const withoutTimes = (text: string) => text.replace(/time="[^"]*" /g, "").replace(/^(ctr|berthctl): /m, "");
    assert.equal(withoutTimes(gone.stderr), withoutTimes(ctrGone.stderr));
  });
});

describe("registry settings from berthd's config file", () => {
  let configured: Daemon;
  let plain: TestRegistry;
  let tls: TestRegistry;
  let configFile: string;

  /** berthd with --config: a launcher keeps the harness's pid check (exec, same pid). */
  function launcher(config: unknown, name: string): string {
    configFile = join(work, `${name}.json`);
    writeFileSync(configFile, JSON.stringify(config));
    const path = join(work, `${name}-berthd`);
    writeFileSync(path, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(distDir, "berthd.js"))} --config ${JSON.stringify(configFile)} "$@"\n`);
    chmodSync(path, 0o755);
    return path;
  }

  before(async () => {
    useConfigDir("none");
    const pki = makePki(join(work, "pki"));
    plain = await TestRegistry.start(join(work, "plain-registry"));
    stops.push(() => plain.stop());
    // A certificate from a CA no one was told about: only an insecure host may use it.
    tls = await TestRegistry.start(join(work, "tls-registry"), { tls: { certificate: pki.serverCert, key: pki.serverKey } });
    stops.push(() => tls.stop());
    const certsDir = join(work, "no-certs");
    mkdirSync(certsDir);
    configured = await startDaemon({
      launcher: launcher({ registry: { defaultRegistry: plain.host, mirrors: { "127.0.0.1:1": [`http://${plain.host}`] }, insecure: [tls.host], certsDir } }, "configured"),
    });
    stops.push(() => configured.destroy());
    await storeImage(connectImageServices(configured.address, "default"), busybox.blobs, "docker.io/library/busybox:latest", busybox.manifest);
  });

  test("short names go to the default registry", () => {
    ok(configured.berthctl(["push", "settings/busybox:1", "docker.io/library/busybox:latest"]), "push to the default registry");
    const pulled = ok(configured.berthctl(["pull", "settings/busybox:1"], undefined, "short"), "pull by short name");
    const [row] = tableRows(pulled.stdout.slice(pulled.stdout.indexOf("REF")));
    assert.deepEqual(row!.slice(0, 3), [`${plain.host}/settings/busybox:1`, busybox.manifest.mediaType, busybox.manifest.digest]);
  });

  test("a registry's mirror serves its pulls (nothing listens at the registry's own address)", () => {
    const pulled = ok(configured.berthctl(["pull", "127.0.0.1:1/settings/busybox:1"], undefined, "mirrored"), "pull through the mirror");
    const [row] = tableRows(pulled.stdout.slice(pulled.stdout.indexOf("REF")));
    assert.deepEqual(row!.slice(0, 3), ["127.0.0.1:1/settings/busybox:1", busybox.manifest.mediaType, busybox.manifest.digest]);
    const unconfigured = d.berthctl(["pull", "127.0.0.1:1/settings/busybox:1"], undefined, "mirrored");
    assert.equal(unconfigured.code, 1, "without the mirror the pull fails");
    assert.match(unconfigured.stderr, /ECONNREFUSED/);
  });

  test("an insecure registry's certificate is not verified; elsewhere it is", () => {
    ok(configured.berthctl(["push", `${tls.host}/settings/busybox:1`, "docker.io/library/busybox:latest"]), "push to the insecure registry");
    ok(configured.berthctl(["pull", `${tls.host}/settings/busybox:1`], undefined, "insecure"), "pull from the insecure registry");
    const refused = d.berthctl(["pull", `${tls.host}/settings/busybox:1`], undefined, "insecure");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^berthctl: .*TLS certificate not trusted/);
  });

  test("a bad registry setting stops berthd at start, naming the key", () => {
    const cases: [unknown, string][] = [
      [{ registry: { insecure: ["http://x"] } }, 'registry.insecure[0]: "http://x" is not a host[:port]'],
      [{ registry: { mirrors: { "docker.io": "m:5000" } } }, 'registry.mirrors["docker.io"]: expected a list of a mirror [http[s]://]host[:port]'],
      [{ registry: { defaultRegistry: 5 } }, "registry.defaultRegistry: 5 is not a host[:port]"],
      [{ registry: { mirror: {} } }, "registry.mirror: unknown setting (known: defaultRegistry, mirrors, insecure, certsDir)"],
      [{ registry: { certsDir: "certs" } }, "registry.certsDir: expected an absolute path"],
    ];
    for (const [i, [config, message]] of cases.entries()) {
      const file = join(work, `bad-${i}.json`);
      writeFileSync(file, JSON.stringify(config));
      const base = join(work, `bad-${i}`);
      const r = run(process.execPath, [join(distDir, "berthd.js"), "--config", file, "--root", join(base, "root"), "--state", join(base, "state")]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `berthd: config file ${file}: ${message}\n`);
      assert.equal(existsSync(base), false, "nothing was created");
    }
  });
});
