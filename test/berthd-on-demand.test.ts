// content, images and snapshots run on demand (core/routes.ts), as diff and jobs do: an
// idle daemon is berthd, redis and tasks only. A call through the gateway starts the
// process it needs; a process inside Berth that calls another directly (jobs, diff)
// has berthd start it (berth.internal.v1.Processes, core/on-demand-client.ts); a
// collection starts a file owner only when it left files of that owner to unlink, and
// a collection at start does the same. Idle processes exit after BERTH_IDLE_EXIT_MS.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createChannel, createClient, Status } from "nice-grpc";
import { connectivityState } from "@grpc/grpc-js";
import { ContentDefinition } from "../core/gen/containerd/services/content/v1/content.ts";
import { ImagesDefinition } from "../core/gen/containerd/services/images/v1/images.ts";
import { ProcessesDefinition } from "../core/gen/berth/internal/v1/processes.ts";
import { closeChannels, grpcClient, inNamespace } from "../core/grpc-client.ts";
import { onDemandClient, startProcess } from "../core/on-demand-client.ts";
import { processName } from "../bench/proc-memory.ts";
import { isRunning } from "../core/process.ts";
import { childPids, closeFreshChannels, Daemon, freshClient, ok, sleep, startDaemon } from "./harness.ts";
import { writeBusyboxArchive } from "./fixtures/busybox-daemon.ts";
import { blobFiles, snapshotDirs } from "./fixtures/daemon-files.ts";

const image = "docker.io/library/busybox:latest";
const idleExitMs = 1000;
const onDemand = ["content", "images", "snapshots", "diff", "jobs"];
let workdir: string;
let archive: string;

before(async () => {
  workdir = mkdtempSync(join(tmpdir(), "berth-on-demand-"));
  archive = await writeBusyboxArchive(workdir);
});

after(() => {
  closeChannels();
  rmSync(workdir, { recursive: true, force: true });
});

/** The names of berthd's children (redis-server, or the bundle a service runs). */
const children = (d: Daemon) => childPids(d.pid!).map(processName).sort();

/** Polls until `check` holds. */
async function until(what: string, check: () => boolean, d: Daemon, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}\n${d.log.slice(-3000)}`);
    await sleep(50);
  }
}

/** Until every on-demand process has exited (idle). */
const allIdle = (d: Daemon) => until("every on-demand process exited", () => onDemand.every((name) => d.servicePid(name) === undefined), d);

describe("processes started on demand", () => {
  let d: Daemon;
  before(async () => {
    d = await startDaemon({ env: { BERTH_IDLE_EXIT_MS: String(idleExitMs) } });
  });
  after(async () => {
    await d?.destroy();
  });

  test("an idle daemon runs redis and tasks beside berthd, nothing else", () => {
    assert.deepEqual(children(d), ["redis-server", "tasks"]);
  });

  test("content, images and snapshots each start with the first call through the gateway and exit once idle", async () => {
    for (const [name, args] of [
      ["content", ["content", "ls"]],
      ["images", ["images", "ls"]],
      ["snapshots", ["snapshots", "ls"]],
    ] as const) {
      ok(d.ctr([...args]), `ctr ${args.join(" ")}`);
      assert.ok(d.servicePid(name), `${name} runs after ctr ${args.join(" ")}`);
      await until(`${name} exited once idle`, () => d.servicePid(name) === undefined, d);
      ok(d.ctr([...args]), `ctr ${args.join(" ")} after ${name} exited`);
    }
  });

  test("a public call that starts images starts content and snapshots beside it (ctr run calls them next); an internal one does not", async () => {
    await allIdle(d);
    ok(d.ctr(["images", "ls"]), "ctr images ls");
    await until("content and snapshots started along with images", () => Boolean(d.servicePid("content") && d.servicePid("snapshots")), d);
    await allIdle(d);
    const images = onDemandClient(ImagesDefinition, d.state, "images");
    assert.deepEqual((await images.list({ filters: [] }, inNamespace("default"))).images, []);
    assert.equal(d.servicePid("snapshots"), undefined, "a process inside Berth starts only what it calls");
    await allIdle(d);
  });

  test("a client inside Berth has berthd start an idle process, and again after it exited", async () => {
    await allIdle(d);
    const images = onDemandClient(ImagesDefinition, d.state, "images");
    const content = onDemandClient(ContentDefinition, d.state, "content");
    const listContent = async () => {
      const infos = [];
      for await (const reply of content.list({ filters: [] }, inNamespace("default"))) infos.push(...reply.info);
      return infos;
    };
    for (let round = 0; round < 2; round++) {
      // unary, then server-streaming
      // Each looked up right after its own call: on a loaded machine, images may retire
      // (idle) while content is still being started for the second call.
      assert.deepEqual((await images.list({ filters: [] }, inNamespace("default"))).images, []);
      assert.ok(d.servicePid("images"), `round ${round}: images runs`);
      assert.deepEqual(await listContent(), []);
      assert.ok(d.servicePid("content"), `round ${round}: content runs`);
      await allIdle(d);
    }
  });

  test("a client inside Berth whose process died, its socket file left behind, has berthd start it again instead of failing", async () => {
    await allIdle(d);
    const content = onDemandClient(ContentDefinition, d.state, "content");
    const listContent = async () => {
      const infos = [];
      for await (const reply of content.list({ filters: [] }, inNamespace("default"))) infos.push(...reply.info);
      return infos;
    };
    // Started through the gateway: the client's own connection is not to the process
    // killed below (a call on a connection whose peer just died fails, as with any peer).
    const viaGateway = freshClient(ContentDefinition, d.address);
    try {
      for await (const _ of viaGateway.list({ filters: [] }, inNamespace("default"))) {
        // drained
      }
    } finally {
      closeFreshChannels();
    }
    const pid = d.servicePid("content");
    assert.ok(pid, "content runs");
    process.kill(pid, "SIGKILL");
    await until("the killed content process is gone", () => !isRunning(pid), d);
    assert.ok(existsSync(join(d.state, "services", "content.sock")), "its socket file is still there, refusing connections");
    // Right away, before berthd's restart of the crashed process: connections are
    // refused, and the client must not spend its attempts on them without berthd.
    assert.deepEqual(await listContent(), []);
    assert.notEqual(d.servicePid("content"), pid);
  });

  test("a call through the gateway while berthd restarts a killed process waits for the new one to listen (the old socket file proves nothing)", async () => {
    await allIdle(d);
    const content = freshClient(ContentDefinition, d.address);
    const listContent = async () => {
      const infos = [];
      for await (const reply of content.list({ filters: [] }, inNamespace("default"))) infos.push(...reply.info);
      return infos;
    };
    try {
      assert.deepEqual(await listContent(), []);
      const pid = d.servicePid("content");
      assert.ok(pid, "content runs");
      process.kill(pid, "SIGKILL");
      // berthd restarts a crashed process: the call comes while the new one starts.
      await until("berthd started a new content process", () => (d.servicePid("content") ?? pid) !== pid, d);
      assert.deepEqual(await listContent(), []);
    } finally {
      closeFreshChannels();
    }
  });

  test("concurrent calls that find a process stopped share one start, and all are answered", async () => {
    await allIdle(d);
    const images = onDemandClient(ImagesDefinition, d.state, "images");
    const replies = await Promise.all(Array.from({ length: 50 }, () => images.list({ filters: [] }, inNamespace("default"))));
    assert.equal(replies.filter((r) => r.images.length === 0).length, 50);
  });

  test("a process started for a caller waits for that caller's first call past the idle time (a caller slowed by load), then retires once idle", async () => {
    await allIdle(d);
    // What a client inside Berth does before its call (core/on-demand-client.ts).
    await startProcess(d.state, "content");
    const pid = d.servicePid("content");
    assert.ok(pid, "content runs");
    // The caller is held up (its event loop busy, its core taken) for several idle
    // times plus the retirement's grace: the call it then makes must still find the
    // process it had started, not a removed socket.
    await sleep(idleExitMs * 3);
    const socket = join(d.state, "services", "content.sock");
    assert.ok(existsSync(socket), "content's socket is still there for the late first call");
    const content = freshClient(ContentDefinition, socket);
    try {
      for await (const _ of content.list({ filters: [] }, inNamespace("default"))) {
        // drained
      }
    } finally {
      closeFreshChannels();
    }
    assert.equal(d.servicePid("content"), pid, "the same process answered");
    // After its first call, the usual idle time applies.
    await until("content exited once idle after its first call", () => d.servicePid("content") === undefined, d, idleExitMs * 10);
  });

  test("a call sent on an open connection during the retirement's grace is answered even when the process gets no CPU until the grace is over", async () => {
    const socket = join(d.state, "services", "content.sock");
    const listAll = async (client: ReturnType<typeof createClient<typeof ContentDefinition>>) => {
      const infos = [];
      for await (const reply of client.list({ filters: [] }, inNamespace("default"))) infos.push(...reply.info);
      return infos;
    };
    // The window is the retirement's short grace: a round that stops the process too
    // late (its shutdown already under way) is tried again.
    let caught = 0;
    for (let round = 0; round < 5 && caught === 0; round++) {
      await allIdle(d);
      await startProcess(d.state, "content");
      const pid = d.servicePid("content")!;
      const channel = createChannel(`unix://${socket}`);
      try {
        const client = createClient(ContentDefinition, channel);
        await listAll(client);
        while (existsSync(socket)) await new Promise((resolve) => setImmediate(resolve));
        // Retiring: its grace runs. The process is held (as a loaded machine would leave
        // it without a core) while a call goes out on the connection it still has.
        process.kill(pid, "SIGSTOP");
        try {
          // A GOAWAY already sent (the shutdown began before the stop) arrives meanwhile.
          await sleep(50);
          if (channel.getConnectivityState(false) !== connectivityState.READY) continue;
          const call = listAll(client).then(
            () => "answered",
            (err: Error) => err.message,
          );
          await sleep(500);
          caught++;
          process.kill(pid, "SIGCONT");
          assert.equal(await call, "answered", "the call that reached the socket in the grace");
        } finally {
          process.kill(pid, "SIGCONT");
        }
      } finally {
        channel.close();
      }
    }
    assert.equal(caught, 1, "a round held the process in its grace");
  });

  test("a call that finds content retiring waits for it to exit: never two content processes at once", async () => {
    const content = freshClient(ContentDefinition, d.address);
    const socket = join(d.state, "services", "content.sock");
    const copies = () => childPids(d.pid!).filter((pid) => processName(pid) === "content").length;
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, copies())), 5);
    try {
      for (let round = 0; round < 5; round++) {
        for await (const _ of content.list({ filters: [] }, inNamespace("default"))) {
          // drained
        }
        // It retires: its socket goes first, and it lives on for a moment after.
        await until("content removed its socket", () => !existsSync(socket), d);
        for await (const _ of content.list({ filters: [] }, inNamespace("default"))) {
          // drained
        }
      }
    } finally {
      clearInterval(sampler);
      closeFreshChannels();
    }
    assert.equal(most, 1, "content processes running at once");
  });

  test("berthd refuses to start a process that is not in the process table, naming it", async () => {
    const processes = grpcClient(ProcessesDefinition, join(d.state, "services", "metadata.sock"));
    await assert.rejects(processes.ready({ name: "nope" }), (err: { code: Status; details: string }) => {
      assert.equal(err.code, Status.INVALID_ARGUMENT);
      assert.match(err.details, /no process named "nope" \(the process table has content, images, snapshots, tasks, diff, jobs\)/);
      return true;
    });
  });

  test("a collection with nothing to unlink leaves idle content and snapshots stopped", async () => {
    await allIdle(d);
    const lease = ok(d.ctr(["leases", "create"]), "lease create").stdout.trim();
    ok(d.ctr(["leases", "rm", "--sync", lease]), "leases rm --sync");
    assert.equal(d.servicePid("content"), undefined, "content was not started");
    assert.equal(d.servicePid("snapshots"), undefined, "snapshots was not started");
  });

  test("an image removed while content and snapshots are idle has its files unlinked by images rm --sync", async () => {
    ok(d.ctr(["images", "import", archive]), "import");
    assert.notDeepEqual(blobFiles(d), []);
    assert.notDeepEqual(snapshotDirs(d), []);
    await allIdle(d);
    ok(d.ctr(["images", "rm", "--sync", image]), "images rm --sync");
    assert.deepEqual(blobFiles(d), [], "the blob files are gone");
    assert.deepEqual(snapshotDirs(d), [], "the snapshot directories are gone");
  });
});

describe("the collection at start", () => {
  test("starts content and snapshots to unlink the files of the rows it removed", async () => {
    const d = await startDaemon({ env: { BERTH_IDLE_EXIT_MS: String(idleExitMs) } });
    try {
      ok(d.ctr(["images", "import", archive]), "import");
      await d.stop();
      // The image's record goes behind berthd's back: its blobs and snapshot are garbage.
      const db = new DatabaseSync(join(d.root, "metadata.db"));
      db.prepare("DELETE FROM images").run();
      db.close();
      assert.notDeepEqual(blobFiles(d), []);
      await d.start();
      await until("the blob files and snapshot directories are unlinked", () => blobFiles(d).length === 0 && snapshotDirs(d).length === 0, d);
      await allIdle(d);
    } finally {
      await d.destroy();
    }
  });
});

describe("--keep-processes", () => {
  test("every process starts with berthd and stays past the idle time; a crashed one is restarted", async () => {
    const d = await startDaemon({ args: ["--keep-processes"], env: { BERTH_IDLE_EXIT_MS: String(idleExitMs), BERTH_LOG_LEVEL: "info" } });
    try {
      // berthd writes its pid file once every process it starts answers.
      assert.deepEqual(children(d), [...onDemand, "redis-server", "tasks"].sort());
      // content and jobs warm their pull path up from a loopback registry of their own,
      // and leave nothing behind: no namespace (so no image, blob or lease) was made.
      const warmedUp = () => d.log.split("\n").filter((line) => line.includes('"msg":"pull path warmed up"'));
      await until("content and jobs warmed up", () => warmedUp().length === 2, d);
      assert.deepEqual(warmedUp().map((line) => (JSON.parse(line) as { name: string }).name).sort(), ["content", "jobs"]);
      assert.equal(ok(d.ctr(["namespaces", "ls", "-q"])).stdout, "");
      const pids = onDemand.map((name) => d.servicePid(name));
      ok(d.ctr(["images", "import", archive]), "import");
      // Three idle times after the last call: an on-demand process would have exited by now.
      await sleep(idleExitMs * 3);
      assert.deepEqual(onDemand.map((name) => d.servicePid(name)), pids, "the same processes still run");
      const content = d.servicePid("content")!;
      process.kill(content, "SIGKILL");
      await d.waitForRestart("content", content);
      ok(d.ctr(["images", "ls"]), "images ls after content's restart");
    } finally {
      await d.destroy();
    }
  });

  test("a keepProcesses in the config file that is not a boolean: berthd refuses to start, naming it", async () => {
    const dir = mkdtempSync(join(workdir, "keep-"));
    const file = join(dir, "berthd.json");
    writeFileSync(file, JSON.stringify({ keepProcesses: "yes" }));
    const d = new Daemon({ args: ["--config", file] });
    try {
      await assert.rejects(d.start(), /config file .*berthd\.json: keepProcesses must be true or false, not "yes"/);
    } finally {
      await d.destroy();
    }
  });
});
