// The berth CLI (dist/berth.js) against a real berthd's Engine API, side by side with the
// real docker CLI on the same engine: the same tables byte for byte where docker has
// them, the same exit codes and daemon messages, run's flow (attach, wait, start), exec,
// logs, cp both ways, commit, save/load, pull/push through a real registry, contexts,
// and bad input (hosts, flags, commands, templates, unknown containers).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { distDir, ok, run, type Daemon } from "./harness.ts";
import { startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { removeEveryContainer } from "./engine-cleanup.ts";
import { TestRegistry } from "./fixtures/registry.ts";

let d: Daemon;
let work: string;
let registry: TestRegistry | undefined;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-cli-test-"));
  d = await startEngineWithBusybox();
});

after(async () => {
  try {
    await registry?.stop();
    if (d) await removeEveryContainer(d);
  } finally {
    await d?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  }
});

/** Waits without a timer (the tests here are synchronous: each drives a CLI with spawnSync). */
const spawnSyncSleep = (ms: number) => spawnSync("sleep", [String(ms / 1000)]);

/** The header line and the rows' first words, which stay stable between two calls. */
const firstLine = (text: string) => text.split("\n")[0];

test("version shows the client and the engine", () => {
  const r = ok(d.berth(["version"]), "berth version");
  assert.match(r.stdout, /^Client:\n Version: +\S+\n API version: +1\.41\n/);
  assert.match(r.stdout, /\nServer: Berth Engine\n Engine:\n  Version: +\S+\n  API version: +1\.41 \(minimum version 1\.24\)\n/);
  assert.equal(ok(d.berth(["version", "--format", "{{.Server.ApiVersion}}"])).stdout, "1.41\n");
});

test("ps and images print docker's tables byte for byte", () => {
  assert.equal(ok(d.berth(["ps"])).stdout, ok(d.docker(["ps"])).stdout);
  assert.equal(ok(d.berth(["ps", "-a"])).stdout, ok(d.docker(["ps", "-a"])).stdout);
  assert.equal(ok(d.berth(["images"])).stdout, ok(d.docker(["images"])).stdout);
  assert.equal(ok(d.berth(["images", "-q"])).stdout, ok(d.docker(["images", "-q"])).stdout);
  assert.equal(ok(d.berth(["images", "--no-trunc", "-q"])).stdout, ok(d.docker(["images", "--no-trunc", "-q"])).stdout);
  assert.equal(firstLine(ok(d.berth(["images", "--digests"])).stdout), firstLine(ok(d.docker(["images", "--digests"])).stdout));

  const id = ok(d.berth(["run", "-d", "--name", "listed", "-l", "app=demo", "busybox", "sleep", "100000"]), "run -d").stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  const table = ["--format", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Names}}\t{{.Ports}}\t{{.Labels}}"];
  assert.equal(ok(d.berth(["ps", ...table])).stdout, ok(d.docker(["ps", ...table])).stdout);
  // The header's column names: its widths follow the CREATED text, which may cross a second between the two calls.
  const columns = (text: string) => firstLine(text).split(/ {2,}/);
  assert.deepEqual(columns(ok(d.berth(["ps"])).stdout), columns(ok(d.docker(["ps"])).stdout));
  assert.equal(ok(d.berth(["ps", "-q"])).stdout, ok(d.docker(["ps", "-q"])).stdout);
  assert.equal(ok(d.berth(["ps", "-aq", "--no-trunc"])).stdout, ok(d.docker(["ps", "-aq", "--no-trunc"])).stdout);
  assert.equal(ok(d.berth(["ps", "--filter", "label=app=demo", "--format", "{{.Names}} {{.Label \"app\"}}"])).stdout, "listed demo\n");
  assert.equal(ok(d.berth(["ps", "--filter", "label=app=other", "-q"])).stdout, "");
  const json = JSON.parse(ok(d.berth(["ps", "--format", "{{json .}}"])).stdout) as Record<string, string>;
  const dockerJson = JSON.parse(ok(d.docker(["ps", "--format", "{{json .}}"])).stdout) as Record<string, string>;
  for (const key of ["ID", "Image", "Command", "Names", "Labels", "State", "Ports", "Mounts", "Networks", "LocalVolumes", "Size"]) {
    assert.equal(json[key], dockerJson[key], `{{json .}} field ${key}`);
  }
  assert.match(json.RunningFor!, /ago$/);
  ok(d.berth(["rm", "-f", "listed"]), "rm -f");
});

test("run: output split by stream, exit codes, stdin, --rm, start failures", () => {
  const r = d.berth(["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, "out\n");
  assert.equal(r.stderr, "err\n");
  assert.equal(ok(d.berth(["run", "-i", "--rm", "busybox", "cat"], "piped in\n"), "run -i").stdout, "piped in\n");
  const env = ok(d.berth(["run", "--rm", "-e", "A=1", "-w", "/etc", "-u", "nobody", "--hostname", "boxhost", "busybox", "sh", "-c", 'echo "$A $(pwd) $(id -u) $(hostname)"']), "run -e -w -u");
  assert.equal(env.stdout, "1 /etc 65534 boxhost\n");
  const missing = d.berth(["run", "--rm", "busybox", "nosuchcmd"]);
  assert.equal(missing.code, 127, missing.stderr);
  assert.match(missing.stderr, /^berth: Error response from daemon: .*executable file not found/);
  assert.equal(ok(d.berth(["ps", "-aq"])).stdout, "", "--rm removed every container, failed start included");
});

test("run -it and exec -it work on a terminal (under script(1)), resizes and detach keys included", () => {
  const env = { ...process.env, BERTH_HOST: `unix://${d.dockerSocket}`, HOME: join(d.base, "berth-home") };
  const berth = `${process.execPath} ${join(distDir, "berth.js")}`;
  const r = run("script", ["-qec", `${berth} run -it --rm busybox sh -c 'tty; echo tty-ok; exit 3'`, "/dev/null"], undefined, env);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stdout, /\/dev\/pts\/\d+\r\n/);
  assert.match(r.stdout, /\ntty-ok\r\n$/, "the local terminal is raw: no \\r added to the container's \\r\\n");
  ok(d.berth(["run", "-d", "--name", "term", "busybox", "sleep", "100000"]), "run -d");
  const e = run("script", ["-qec", `${berth} exec -it term sh -c 'tty; echo exec-tty-ok; exit 4'`, "/dev/null"], undefined, env);
  assert.equal(e.code, 4, e.stdout + e.stderr);
  assert.match(e.stdout, /exec-tty-ok\r\n/);
  // ctrl-p ctrl-q leaves the container running.
  const detached = run("sh", ["-c", `(sleep 2; printf '\\020\\021') | script -qec '${berth} run -it --name kept busybox sh' /dev/null`], undefined, env);
  assert.equal(detached.code, 0, detached.stdout + detached.stderr);
  assert.equal(ok(d.berth(["inspect", "--format", "{{.State.Running}}", "kept"])).stdout, "true\n");
  const notTty = d.berth(["run", "-it", "--rm", "busybox", "true"]);
  assert.equal(notTty.code, 1);
  assert.equal(notTty.stderr, "the input device is not a TTY\n");
  ok(d.berth(["rm", "-f", "term", "kept"]), "rm -f");
});

test("run of an image that is not there says so, tries to pull, and exits 125", () => {
  const r = d.berth(["run", "--rm", "127.0.0.1:1/nothere:1", "true"]);
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, /^Unable to find image '127\.0\.0\.1:1\/nothere:1' locally\n/);
  assert.match(r.stderr, /berth: Error response from daemon: .*\n\nRun 'berth run --help' for more information\n$/);
});

test("create, start -a, logs, exec, inspect, top, stop, wait, rm", () => {
  const id = ok(d.berth(["create", "--name", "job", "busybox", "sh", "-c", "echo one; echo two; echo three >&2"]), "create").stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  const started = d.berth(["start", "-a", "job"]);
  assert.equal(started.code, 0, started.stderr);
  assert.equal(started.stdout, "one\ntwo\n");
  assert.equal(started.stderr, "three\n");
  const logs = ok(d.berth(["logs", "job"]), "logs");
  assert.equal(logs.stdout, "one\ntwo\n");
  assert.equal(logs.stderr, "three\n");
  assert.equal(ok(d.berth(["logs", "--tail", "1", "job"])).stdout + ok(d.berth(["logs", "--tail", "1", "job"])).stderr, ok(d.docker(["logs", "--tail", "1", "job"])).stdout + ok(d.docker(["logs", "--tail", "1", "job"])).stderr);
  assert.match(ok(d.berth(["logs", "-t", "job"])).stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z one\n/);
  assert.equal(ok(d.berth(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.Name}} {{json .Config.Cmd}}", "job"])).stdout, 'exited 0 /job ["sh","-c","echo one; echo two; echo three >&2"]\n');
  const inspected = JSON.parse(ok(d.berth(["inspect", "job"])).stdout) as { Id: string }[];
  assert.equal(inspected[0]!.Id, id);
  assert.equal(ok(d.berth(["rm", "job"])).stdout, "job\n");

  ok(d.berth(["run", "-d", "--name", "svc", "busybox", "sleep", "100000"]), "run -d");
  const exec = d.berth(["exec", "-e", "X=7", "-w", "/tmp", "svc", "sh", "-c", 'echo "$X $(pwd)"; echo e >&2; exit 4']);
  assert.equal(exec.code, 4);
  assert.equal(exec.stdout, "7 /tmp\n");
  assert.equal(exec.stderr, "e\n");
  assert.equal(ok(d.berth(["exec", "-i", "svc", "cat"], "to exec\n")).stdout, "to exec\n");
  const top = ok(d.berth(["top", "svc"]), "top").stdout;
  assert.equal(firstLine(top), firstLine(ok(d.docker(["top", "svc"])).stdout));
  assert.match(top, /sleep 100000/);
  assert.equal(ok(d.berth(["pause", "svc"])).stdout, "svc\n");
  assert.match(ok(d.berth(["ps", "--format", "{{.Status}}"])).stdout, /\(Paused\)/);
  ok(d.berth(["unpause", "svc"]));
  ok(d.berth(["rename", "svc", "svc2"]));
  assert.equal(ok(d.berth(["stop", "-t", "1", "svc2"])).stdout, "svc2\n");
  assert.equal(ok(d.berth(["wait", "svc2"])).stdout, ok(d.docker(["wait", "svc2"])).stdout);
  const stats = ok(d.berth(["ps", "-a", "--format", "{{.State}}", "--filter", "name=svc2"])).stdout;
  assert.equal(stats, "exited\n");
  assert.equal(ok(d.berth(["rm", "svc2"])).stdout, "svc2\n");
});

test("attach follows a running container to its end and exits with its code; logs -f ends with it", () => {
  ok(d.berth(["run", "-d", "--name", "later", "busybox", "sh", "-c", "sleep 2; echo late; echo late-err >&2; exit 6"]), "run -d");
  const attached = d.berth(["attach", "later"]);
  assert.equal(attached.code, 6, attached.stderr);
  assert.equal(attached.stdout, "late\n");
  assert.equal(attached.stderr, "late-err\n");
  const followed = d.berth(["logs", "-f", "later"]);
  assert.equal(followed.code, 0);
  assert.equal(followed.stdout, "late\n");
  const stopped = d.berth(["attach", "later"]);
  assert.equal(stopped.code, 1);
  assert.equal(stopped.stderr, "You cannot attach to a stopped container, start it first\n");
  ok(d.berth(["run", "-d", "--name", "ticker", "busybox", "sh", "-c", "echo first; sleep 2; echo second"]), "run -d");
  const live = ok(d.berth(["logs", "-f", "ticker"]), "logs -f");
  assert.equal(live.stdout, "first\nsecond\n", "logs -f follows until the container exits");
  ok(d.berth(["rm", "later", "ticker"]), "rm");
});

test("stats --no-stream prints docker's columns for running containers", () => {
  ok(d.berth(["run", "-d", "--name", "measured", "busybox", "sleep", "100000"]), "run -d");
  const r = ok(d.berth(["stats", "--no-stream"]), "stats");
  assert.equal(firstLine(r.stdout), firstLine(ok(d.docker(["stats", "--no-stream"])).stdout));
  assert.match(r.stdout, /\n[0-9a-f]{12} +measured +\d+\.\d\d% +\S+ \/ \S+ +\d+\.\d\d% /);
  ok(d.berth(["rm", "-f", "measured"]), "rm -f");
});

test("cp copies into and out of a container, both ways, renaming as docker does", () => {
  ok(d.berth(["run", "-d", "--name", "files", "busybox", "sleep", "100000"]), "run -d");
  const local = join(work, "cp");
  mkdirSync(local);
  writeFileSync(join(local, "in.txt"), "copied in\n");
  ok(d.berth(["cp", join(local, "in.txt"), "files:/tmp/renamed.txt"]), "cp in (new name)");
  ok(d.berth(["cp", join(local, "in.txt"), "files:/etc/"]), "cp in (into a directory)");
  assert.equal(ok(d.berth(["exec", "files", "cat", "/tmp/renamed.txt", "/etc/in.txt"])).stdout, "copied in\ncopied in\n");
  ok(d.berth(["cp", "files:/tmp/renamed.txt", join(local, "out.txt")]), "cp out (a file, new name)");
  assert.equal(readFileSync(join(local, "out.txt"), "utf8"), "copied in\n");
  ok(d.berth(["cp", "files:/etc", join(local, "etc-copy")]), "cp out (a directory, new name)");
  assert.equal(readFileSync(join(local, "etc-copy", "in.txt"), "utf8"), "copied in\n");
  const missing = d.berth(["cp", "files:/no/such/file", local]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Could not find the file \/no\/such\/file in container files/);

  ok(d.berth(["rm", "-f", "files"]), "rm -f");
});

test("save and load round-trip an image; tag and rmi print docker's lines", () => {
  ok(d.berth(["tag", "busybox", "berth-test/saved:1"]), "tag");
  const archive = join(work, "saved.tar");
  ok(d.berth(["save", "-o", archive, "berth-test/saved:1"]), "save -o");
  assert.ok(readFileSync(archive).subarray(257, 262).toString() === "ustar", "save wrote a tar");
  assert.deepEqual(readdirSync(work).filter((n) => n.includes(".tmp")), [], "no temp file left");
  assert.match(ok(d.berth(["rmi", "berth-test/saved:1"])).stdout, /^Untagged: berth-test\/saved:1\n/);
  assert.match(ok(d.berth(["load", "-i", archive])).stdout, /Loaded image: berth-test\/saved:1\n/);
  assert.match(ok(d.berth(["images", "berth-test/saved"])).stdout, /berth-test\/saved +1 /);
  const bad = d.berth(["load", "-i", join(work, "nope.tar")]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /nope\.tar: no such file or directory/);
  const gone = d.berth(["rmi", "berth-test/nosuch:1"]);
  assert.equal(gone.code, 1);
  assert.equal(gone.stderr, d.docker(["rmi", "berth-test/nosuch:1"]).stderr);
});

test("push and pull through a real registry show docker's progress lines", async () => {
  registry = await TestRegistry.start(join(work, "registry"));
  const ref = `${registry.host}/berth-cli/bb:1`;
  ok(d.berth(["tag", "busybox", ref]), "tag");
  const pushed = ok(d.berth(["push", ref]), "push");
  assert.match(pushed.stdout, new RegExp(`The push refers to repository \\[${registry.host}/berth-cli/bb\\]`));
  assert.match(pushed.stdout, /: Pushed\n/);
  assert.match(pushed.stdout, /1: digest: sha256:[0-9a-f]{64} size: \d+\n/);
  ok(d.berth(["rmi", ref]), "rmi");
  const pulled = ok(d.berth(["pull", ref]), "pull");
  assert.match(pulled.stdout, /Pull complete|Already exists/);
  assert.match(pulled.stdout, new RegExp(`Status: (Downloaded newer image|Image is up to date) for ${registry.host}/berth-cli/bb:1\n`));
  assert.doesNotMatch(pulled.stdout, /\x1b\[/, "no cursor movement when stdout is not a terminal");
  const missing = d.berth(["pull", `${registry.host}/berth-cli/bb:nope`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^Error response from daemon: manifest for .*bb:nope not found/);
});

test("unknown containers, commands, flags and hosts fail the way docker does", () => {
  const containersBefore = ok(d.berth(["ps", "-aq"])).stdout;
  const rm = d.berth(["rm", "nosuch"]);
  assert.equal(rm.code, 1);
  assert.equal(rm.stderr, "Error response from daemon: No such container: nosuch\n");
  assert.equal(rm.stderr, d.docker(["rm", "nosuch"]).stderr);
  const forced = d.berth(["rm", "-f", "nosuch"]);
  assert.equal(forced.code, 0, "rm -f of a missing container reports it but succeeds");
  assert.equal(forced.stderr, "Error response from daemon: No such container: nosuch\n");
  const stop = d.berth(["stop", "nosuch"]);
  assert.equal(stop.code, 1);
  assert.equal(stop.stderr, "Error response from daemon: No such container: nosuch\n");
  const inspect = d.berth(["inspect", "nosuch"]);
  assert.equal(inspect.code, 1);
  assert.equal(inspect.stdout, "[]\n");
  assert.equal(inspect.stderr, "Error: No such object: nosuch\n");
  const logs = d.berth(["logs", "nosuch"]);
  assert.equal(logs.code, 1);
  assert.equal(logs.stderr, "Error response from daemon: No such container: nosuch\n");
  const exec = d.berth(["exec", "nosuch", "true"]);
  assert.equal(exec.code, 1);
  assert.equal(exec.stderr, "Error response from daemon: No such container: nosuch\n");

  const unknown = d.berth(["frobnicate"]);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.stderr, "berth: unknown command: berth frobnicate\n\nRun 'berth --help' for more information\n");
  const flag = d.berth(["ps", "--bogus"]);
  assert.equal(flag.code, 125);
  assert.match(flag.stderr, /^unknown flag: --bogus\n/);
  const short = d.berth(["ps", "-Z"]);
  assert.equal(short.code, 125);
  assert.match(short.stderr, /^unknown shorthand flag: 'Z' in -Z\n/);
  const count = d.berth(["stop"]);
  assert.equal(count.code, 1);
  assert.match(count.stderr, /"berth stop" requires at least 1 argument/);
  const int = d.berth(["ps", "-n", "many"]);
  assert.equal(int.code, 125);
  assert.match(int.stderr, /invalid argument "many" for "--last" flag/);
  const filter = d.berth(["ps", "--filter", "nonsense"]);
  assert.equal(filter.code, 125);
  assert.match(filter.stderr, /bad format of filter "nonsense"/);
  const restart = d.berth(["run", "--restart", "sometimes", "busybox", "true"]);
  assert.equal(restart.code, 125);
  assert.match(restart.stderr, /invalid restart policy "sometimes"/);
  const memory = d.berth(["run", "-m", "lots", "busybox", "true"]);
  assert.equal(memory.code, 125);
  assert.match(memory.stderr, /invalid argument "lots" for "--memory" flag/);
  assert.equal(ok(d.berth(["ps", "-aq"])).stdout, containersBefore, "bad flags created nothing");

  for (const host of ["foo://bar", "unix://relative/path", "tcp://nohostport", "tcp://127.0.0.1:99999"]) {
    const r = d.berth(["-H", host, "ps"]);
    assert.equal(r.code, 1, host);
    assert.match(r.stderr, new RegExp(`^invalid host "${host.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}": `), host);
  }
  const absent = d.berth(["-H", `unix://${join(work, "no.sock")}`, "ps"]);
  assert.equal(absent.code, 1);
  assert.equal(absent.stderr, `Cannot connect to the Berth engine at unix://${join(work, "no.sock")}. Is berthd running?\n`);
});

test("--format: Go-template basics, and a malformed template is refused before any request", () => {
  const image = ok(d.berth(["inspect", "--type", "image", "--format", '{{json .RepoTags}} {{.Os}} {{len .RootFS.Layers}} {{upper .Architecture}} {{index .Config.Env 0}}', "busybox"])).stdout;
  assert.match(image, /^\[.*"busybox:latest".*\] linux \d+ [A-Z0-9]+ PATH=\S+\n$/);
  const ranged = ok(d.berth(["inspect", "--format", "{{range .RepoTags}}[{{.}}]{{end}}{{if .Config.Cmd}} has-cmd{{else}} no-cmd{{end}}", "busybox"])).stdout;
  assert.match(ranged, /^(\[[^\]]+\])+ (has|no)-cmd\n$/);
  assert.ok(ranged.includes("[busybox:latest]"), ranged);
  const listed = ok(d.berth(["images", "--format", "{{.Repository}}|{{.Tag}}", "busybox"])).stdout;
  assert.match(listed, /^busybox\|latest\n/);
  assert.equal(listed, ok(d.docker(["images", "--format", "{{.Repository}}|{{.Tag}}", "busybox"])).stdout);
  const table = ok(d.berth(["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "busybox"])).stdout;
  assert.equal(table, ok(d.docker(["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "busybox"])).stdout);
  for (const bad of ["{{.ID", "{{end}}", "{{if .ID}}x", "{{nosuchfunc .ID}}"]) {
    const r = d.berth(["ps", "--format", bad], undefined, { BERTH_HOST: `unix://${join(work, "no.sock")}` });
    assert.equal(r.code, 1, bad);
    assert.match(r.stderr, /^template parsing error: /, bad);
  }
  const wrongType = d.berth(["inspect", "--type", "volume", "busybox"]);
  assert.equal(wrongType.code, 1);
  assert.match(wrongType.stderr, /"volume" is not a valid value for --type/);
});

test("contexts name engines: create, use, ls, --context, and bad contexts", () => {
  const host = `unix://${d.dockerSocket}`;
  const env = { BERTH_HOST: "" };
  const file = join(d.base, "berth-home", ".berth", "contexts.json");
  assert.equal(ok(d.berth(["context", "create", "other", "--host", host, "--description", "the test engine"], undefined, env)).stdout, 'other\nSuccessfully created context "other"\n');
  assert.equal(ok(d.berth(["--context", "other", "images", "-q"], undefined, env)).stdout, ok(d.docker(["images", "-q"])).stdout);
  const dup = d.berth(["context", "create", "other", "--host", host], undefined, env);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /context "other" already exists/);
  const badHost = d.berth(["context", "create", "broken", "--host", "http://x"], undefined, env);
  assert.equal(badHost.code, 1);
  assert.match(badHost.stderr, /invalid host "http:\/\/x"/);
  assert.doesNotMatch(readFileSync(file, "utf8"), /broken/, "a refused context is not written");
  ok(d.berth(["context", "use", "other"], undefined, env), "context use");
  assert.equal(ok(d.berth(["context", "show"], undefined, env)).stdout, "other\n");
  assert.match(ok(d.berth(["context", "ls"], undefined, env)).stdout, /^NAME +DESCRIPTION +DOCKER ENDPOINT\ndefault +The local Berth daemon +unix:\/\/\/run\/berth\/docker\.sock\nother \* +the test engine +unix:\/\//);
  assert.match(ok(d.berth(["version"], undefined, env)).stdout, /Context: +other\n/);
  assert.equal(ok(d.berth(["images", "-q"], undefined, env)).stdout, ok(d.docker(["images", "-q"])).stdout, "the current context is used");
  const conflict = d.berth(["-H", host, "--context", "other", "ps"], undefined, env);
  assert.equal(conflict.code, 1);
  assert.match(conflict.stderr, /give either --host or --context, not both/);
  const unknownContext = d.berth(["--context", "nope", "ps"], undefined, env);
  assert.equal(unknownContext.code, 1);
  assert.match(unknownContext.stderr, /context "nope" does not exist/);
  const inUse = d.berth(["context", "rm", "other"], undefined, env);
  assert.equal(inUse.code, 1);
  ok(d.berth(["context", "use", "default"], undefined, env));
  ok(d.berth(["context", "rm", "other"], undefined, env));
  assert.ok(existsSync(file));
  assert.doesNotMatch(readFileSync(file, "utf8"), /other/);
});

test("login and logout keep credentials in the docker config as docker writes them", async () => {
  registry ??= await TestRegistry.start(join(work, "registry"));
  const config = join(d.base, "berth-home", ".docker", "config.json");
  const r = ok(d.berth(["login", "-u", "someone", "--password-stdin", registry.host], "secret\n"), "login");
  assert.equal(r.stdout, "Login Succeeded\n");
  const saved = JSON.parse(readFileSync(config, "utf8")) as { auths: Record<string, { auth: string }> };
  assert.equal(Buffer.from(saved.auths[registry.host]!.auth, "base64").toString(), "someone:secret");
  assert.equal(ok(d.berth(["logout", registry.host])).stdout, `Removing login credentials for ${registry.host}\n`);
  assert.deepEqual((JSON.parse(readFileSync(config, "utf8")) as { auths: object }).auths, {});
  const refused = d.berth(["login", "-u", "someone", "--password-stdin", "127.0.0.1:1"], "secret\n");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^Error response from daemon: /);
  assert.doesNotMatch(readFileSync(config, "utf8"), /127\.0\.0\.1:1"/, "a refused login stores nothing");
  const noPassword = d.berth(["login", "-u", "someone"]);
  assert.equal(noPassword.code, 1);
  assert.equal(ok(d.berth(["logout", "127.0.0.1:5998"])).stdout, "Not logged in to 127.0.0.1:5998\n");
});

test("commit makes an image of a container's changes", () => {
  ok(d.berth(["run", "-d", "--name", "changed", "busybox", "sh", "-c", "echo made > /made.txt; sleep 100000"]), "run -d");
  for (let i = 0; i < 100 && d.berth(["exec", "changed", "cat", "/made.txt"]).code !== 0; i++) spawnSyncSleep(50);
  const committed = ok(d.berth(["commit", "-c", "ENV COMMITTED=yes", "changed", "berth-test/committed:v1"]), "commit").stdout.trim();
  assert.match(committed, /^sha256:[0-9a-f]{64}$/);
  assert.match(ok(d.berth(["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])).stdout, new RegExp(`berth-test/committed:v1 ${committed.slice(7, 19)}`));
  assert.equal(ok(d.berth(["run", "--rm", "berth-test/committed:v1", "sh", "-c", "cat /made.txt; echo $COMMITTED"])).stdout, "made\nyes\n");
  ok(d.berth(["rm", "-f", "changed"]), "rm -f");
  const bad = d.berth(["commit", "nosuch", "x:1"]);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, "Error response from daemon: No such container: nosuch\n");
});

test("info, system df and events print docker's layouts", () => {
  const info = ok(d.berth(["info"]), "info").stdout;
  assert.match(info, /^Client:\n Version: +\S+\n Context: +default\n Debug Mode: false\n\nServer:\n Containers: \d+\n  Running: \d+\n  Paused: \d+\n  Stopped: \d+\n Images: \d+\n/);
  assert.equal(ok(d.berth(["info", "--format", "{{.OSType}}"])).stdout, "linux\n");
  const df = ok(d.berth(["system", "df"]), "system df").stdout;
  assert.equal(firstLine(df), firstLine(ok(d.docker(["system", "df"])).stdout));
  assert.deepEqual(df.trim().split("\n").slice(1).map((l) => l.split(/ {2,}/)[0]), ["Images", "Containers", "Local Volumes", "Build Cache"]);

  const since = String(Math.floor(Date.now() / 1000) - 1);
  ok(d.berth(["run", "--rm", "--name", "evented", "busybox", "true"]), "run");
  const until = String(Math.floor(Date.now() / 1000) + 1);
  const window = ["--since", since, "--until", until, "--filter", "type=container", "--filter", "container=evented"];
  const actions = ok(d.berth(["events", ...window, "--format", "{{.Action}}"]), "events").stdout.split("\n").filter(Boolean);
  for (const action of ["create", "attach", "start", "die", "destroy"]) assert.ok(actions.includes(action), `${action} in ${actions.join(",")}`);
  assert.equal(ok(d.berth(["events", ...window])).stdout, ok(d.docker(["events", ...window])).stdout);
  const badSince = d.berth(["events", "--since", "yesterday-ish"]);
  assert.equal(badSince.code, 125);
  assert.match(badSince.stderr, /invalid value for "--since"/);
});

test("container prune removes stopped containers and reports the space", () => {
  ok(d.berth(["run", "--name", "done1", "busybox", "true"]), "run");
  const r = ok(d.berth(["container", "prune", "-f"]), "container prune");
  assert.match(r.stdout, /^Deleted Containers:\n[0-9a-f]{64}\n\nTotal reclaimed space: \S+\n$/);
  assert.equal(ok(d.berth(["ps", "-aq", "--filter", "status=exited"])).stdout, "");
});
