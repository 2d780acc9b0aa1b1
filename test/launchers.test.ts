// The ways users start berthd and berthctl without npm staying around: the launchers
// scripts/install-launchers.sh writes (setup.sh puts them in /usr/local/bin; here a
// temp dir), and the npm bins (cmd/*/bin), which must run the pinned Node 24 even
// when the first `node` on PATH is another.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { berthdNodeFlags, idleTunedNodeFlags } from "../core/node-flags.ts";
import { ok, repoRoot, run, startDaemon, type Daemon } from "./harness.ts";

const installer = join(repoRoot, "scripts", "install-launchers.sh");
const pinnedNode = realpathSync(join(repoRoot, "node_modules", "node", "bin", "node"));

describe("launchers", () => {
  let dir: string;
  let bin: string;
  let daemon: Daemon | undefined;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "berth-launchers-"));
    bin = join(dir, "bin");
    ok(run("mkdir", [bin]));
    ok(run("sh", [installer, bin]), "install-launchers");
  });

  after(async () => {
    await daemon?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test("berthd started through its launcher is the launcher's own process, running Node 24", async () => {
    daemon = await startDaemon({ launcher: join(bin, "berthd") });
    const pid = daemon.pid!;
    // exec: the pid we spawned is node itself (berthd's pid file names it, or start() would not have returned).
    assert.equal(readlinkSync(`/proc/${pid}/exe`), pinnedNode);
    const ppid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
    assert.equal(ppid, process.pid, "no shell or npm process between the test and berthd");
    // berthd and its always-on services run tuned for size (core/node-flags.ts).
    const nodeFlagsOf = (p: number) => readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").filter((arg) => arg.startsWith("--") && !arg.startsWith("--root") && !arg.startsWith("--state"));
    assert.deepEqual(nodeFlagsOf(pid), berthdNodeFlags);
    assert.deepEqual(nodeFlagsOf(daemon.servicePid("tasks")!), idleTunedNodeFlags);

    const version = ok(run(join(bin, "berthctl"), ["--address", daemon.address, "version"]), "berthctl launcher");
    assert.match(version.stdout, /^ {2}Node version: v24\./m);
    assert.match(version.stdout, /^Server:\n {2}Version: {2}v\S+\n/m);
  });

  test("the npm bin runs the pinned Node 24 whatever node PATH finds first", () => {
    // As npm links it: a symlink in a .bin directory.
    const dotBin = join(dir, "dot-bin");
    ok(run("mkdir", [dotBin]));
    symlinkSync(join(repoRoot, "cmd", "berthctl", "bin", "berthctl"), join(dotBin, "berthctl"));
    // A `node` first on PATH that must not be used.
    const decoy = join(dir, "decoy");
    ok(run("mkdir", [decoy]));
    writeFileSync(join(decoy, "node"), "#!/bin/sh\necho decoy node ran >&2\nexit 97\n", { mode: 0o755 });
    const r = ok(run(join(dotBin, "berthctl"), ["--help"], undefined, { ...process.env, PATH: `${decoy}:/usr/bin:/bin` }), "npm bin");
    assert.match(r.stdout, /^Usage: berthctl/m);
    assert.doesNotMatch(r.stderr, /decoy/);
  });

  test("berthd's npm bin passes the same V8 flags as the installed launcher", () => {
    const npmBin = readFileSync(join(repoRoot, "cmd", "berthd", "bin", "berthd"), "utf8");
    assert.match(npmBin, new RegExp(`^exec "\\$repo/node_modules/node/bin/node" ${berthdNodeFlags.join(" ")} "\\$repo/dist/berthd\\.js" "\\$@"$`, "m"));
  });

  test("installing again replaces the launchers and leaves no temp files", () => {
    ok(run("sh", [installer, bin]), "second install");
    assert.deepEqual(readdirSync(bin).sort(), ["berth", "berthctl", "berthd"]);
    assert.match(readFileSync(join(bin, "berthd"), "utf8"), new RegExp(`^#!/bin/sh\n(?:#.*\n)*exec '[^']+/node' ${berthdNodeFlags.join(" ")} '[^']+/dist/berthd\\.js' "\\$@"\n$`));
  });

  test("a target that is missing or not a directory is refused, and nothing is written", () => {
    const missing = run("sh", [installer, join(dir, "absent")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^install-launchers: .*\/absent is not a directory\n$/);
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    const notDir = run("sh", [installer, file]);
    assert.equal(notDir.code, 1);
    assert.match(notDir.stderr, /a-file is not a directory/);
    assert.equal(readFileSync(file, "utf8"), "");
  });
});
