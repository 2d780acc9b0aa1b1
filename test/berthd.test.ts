// The supervisor: one berthd per root, sockets not world-writable, services restarted
// when they die, clean shutdown, a clear Unimplemented for services Berth lacks, and
// everything stored surviving a kill -9 of berthd itself.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { statSync, readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { createChannel, createClient, Status } from "nice-grpc";
import { Empty } from "../core/gen/google/protobuf/empty.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { DiffDefinition } from "../core/gen/containerd/services/diff/v1/diff.ts";
import { sha256Digest } from "../core/digest.ts";
import { grpcClient, inNamespace } from "../core/grpc-client.ts";
import { Daemon, run, startDaemon, distDir } from "./harness.ts";

describe("berthd", () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.destroy();
  });

  test("a second berthd on the same root refuses to start", () => {
    const r = run(process.execPath, [join(distDir, "berthd.js"), "--root", d.root, "--state", join(d.base, "state2")]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /another berthd is already running with root/);
  });

  test("sockets are not world-accessible", () => {
    for (const socket of [d.address, join(d.state, "services", "metadata.sock"), join(d.state, "redis.sock")]) {
      const mode = statSync(socket).mode & 0o777;
      assert.equal(mode & 0o007, 0, `${socket} has mode ${mode.toString(8)}`);
    }
  });

  test("ctr version reaches the gateway", () => {
    const r = d.ctr(["version"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Server:\s+Version:\s+v\d+\.\d+\.\d+/);
    assert.match(r.stdout, /UUID: [0-9a-f-]{36}/);
  });

  test("a service Berth does not have answers Unimplemented, naming it", async () => {
    const channel = createChannel(`unix://${d.address}`);
    const definition = {
      name: "Nothing",
      fullName: "containerd.services.nothing.v1.Nothing",
      methods: {
        get: { name: "Get", requestType: Empty, requestStream: false, responseType: Empty, responseStream: false, options: {} },
      },
    } as const;
    const client = createClient(definition, channel);
    await assert.rejects(client.get(new Uint8Array()), (err: { code: Status; details: string }) => {
      assert.equal(err.code, Status.UNIMPLEMENTED);
      assert.match(err.details, /containerd\.services\.nothing\.v1\.Nothing/);
      return true;
    });
    channel.close();
  });

  test("a killed service is restarted and serves again", async () => {
    // tasks is always on (content and the others run on demand: test/berthd-on-demand.test.ts).
    const pid = d.servicePid("tasks");
    assert.ok(pid, "tasks pid");
    process.kill(pid, "SIGKILL");
    const newPid = await d.waitForRestart("tasks", pid);
    assert.notEqual(newPid, pid);
    const r = d.ctr(["tasks", "ls"]);
    assert.equal(r.code, 0, r.stderr);
  });

  test("SIGTERM stops berthd while a client holds a stream open (ctr events)", async () => {
    const events = spawn("ctr", ["--address", d.address, "events"], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      // The subscription is open once an event it was sent for arrives.
      let output = "";
      events.stdout!.on("data", (chunk) => (output += chunk));
      for (let i = 0; i < 50 && !output.includes("/namespaces/create"); i++) {
        d.ctr(["namespaces", "create", `held-open-${i}`]);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(output, /\/namespaces\/create/);
      await d.stop();
      assert.deepEqual(d.lastExit, { code: 0, signal: null }, "berthd ended on its own SIGTERM, not by the SIGKILL that follows 15 s later");
    } finally {
      events.kill("SIGTERM");
    }
    await d.start();
  });

  test("SIGTERM stops every service and redis", async () => {
    const services = ["content", "images", "snapshots", "diff", "jobs"].map((name) => d.servicePid(name)).filter((p): p is number => !!p);
    const redisPid = Number(readFileSync(join(d.state, "redis.pid"), "utf8"));
    await d.stop();
    for (const pid of [...services, redisPid]) {
      assert.throws(() => process.kill(pid, 0), `process ${pid} still runs after berthd stopped`);
    }
    await d.start();
  });
});

describe("the private redis", () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.destroy();
  });

  /** What redis answers a raw command sent without the password. */
  function unauthenticated(command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const conn = net.connect(join(d.state, "redis.sock"));
      conn.once("connect", () => conn.write(`${command}\r\n`));
      conn.once("data", (data) => {
        conn.destroy();
        resolve(data.toString());
      });
      conn.once("error", reject);
    });
  }

  test("refuses clients without the password made at start, so events cannot be forged", async () => {
    assert.match(await unauthenticated("PING"), /^-NOAUTH/);
    assert.match(await unauthenticated("PUBLISH berth:events forged"), /^-NOAUTH/);
    assert.doesNotMatch(readFileSync(`/proc/${Number(readFileSync(join(d.state, "redis.pid"), "utf8"))}/cmdline`, "utf8"), /requirepass/);
  });

  test("kill -9 of redis: berthd restarts it and events flow again", async () => {
    const events = spawn("ctr", ["--address", d.address, "events"], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    events.stdout!.on("data", (chunk) => (output += chunk));
    try {
      const pidFile = join(d.state, "redis.pid");
      const old = Number(readFileSync(pidFile, "utf8"));
      process.kill(old, "SIGKILL");
      // Namespaces created until one of them shows in the stream that was open all along.
      let seen = false;
      for (let i = 0; i < 100 && !seen; i++) {
        d.ctr(["namespaces", "create", `after-redis-${i}`]);
        await new Promise((r) => setTimeout(r, 200));
        seen = /\/namespaces\/create \{"name":"after-redis-\d+"/.test(output);
      }
      assert.ok(seen, `ctr events output after redis came back:\n${output}\n${d.log}`);
      assert.notEqual(Number(readFileSync(pidFile, "utf8")), old, "a new redis-server runs");
    } finally {
      events.kill("SIGTERM");
    }
  });
});

describe("processes started on demand", () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ env: { BERTH_IDLE_EXIT_MS: "1000" } });
  });
  after(async () => {
    await d?.destroy();
  });

  /** Polls until the named process is running (true) or gone (false). */
  async function until(name: string, running: boolean): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (Boolean(d.servicePid(name)) === running) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`${name} is ${running ? "not running" : "still running"}:\n${d.log}`);
  }

  test("diff starts with the first call that needs it and exits once idle; the next call starts it again", async () => {
    await until("diff", false);
    const diff = grpcClient(DiffDefinition, d.address);
    // Refused by the diff service itself (so it ran): no mounts to apply to.
    const applyNowhere = () =>
      assert.rejects(diff.apply({ mounts: [], diff: { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${"0".repeat(64)}`, size: 0n, annotations: {} } }, inNamespace("default")), (err: { code: Status; details: string }) => {
        assert.equal(err.code, Status.INVALID_ARGUMENT);
        assert.match(err.details, /no mounts given/);
        return true;
      });
    await applyNowhere();
    await until("diff", false);
    await applyNowhere();
  });

  test("the jobs process runs a collection asked for and exits once nothing is queued", async () => {
    await until("jobs", false);
    const lease = d.ctr(["leases", "create"]).stdout.trim();
    const removed = d.ctr(["leases", "rm", "--sync", lease]);
    assert.equal(removed.code, 0, removed.stderr);
    await until("jobs", false);
  });
});

describe("kill -9 of berthd", () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.destroy();
  });

  test("content, images, namespaces and leases are all there after a restart", async () => {
    const blob = Buffer.from("kept across a crash\n");
    assert.equal(d.ctr(["namespaces", "create", "crash", "team=core"]).code, 0);
    const ingest = d.ctr(["content", "ingest", "crash-ref"], blob, "crash");
    assert.equal(ingest.code, 0, ingest.stderr);
    const digest = sha256Digest(blob);
    const images = grpcClient(ImagesDefinition, d.address);
    await images.create(
      { image: { name: "berth.local/crash:1", target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest, size: BigInt(blob.length) } } },
      inNamespace("crash"),
    );
    const lease = d.ctr(["leases", "create", "--id", "crash-lease"], undefined, "crash");
    assert.equal(lease.code, 0, lease.stderr);

    await d.kill9();
    await d.start();

    assert.match(d.ctr(["namespaces", "ls"]).stdout, /^crash\s+team=core\s*$/m);
    assert.match(d.ctr(["content", "ls"], undefined, "crash").stdout, new RegExp(digest));
    assert.equal(d.ctr(["content", "get", digest], undefined, "crash").stdout, blob.toString());
    assert.match(d.ctr(["images", "ls", "-q"], undefined, "crash").stdout, /^berth\.local\/crash:1$/m);
    assert.match(d.ctr(["leases", "ls"], undefined, "crash").stdout, /^crash-lease\s/m);
  });
});
