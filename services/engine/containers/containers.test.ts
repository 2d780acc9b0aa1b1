// Unit tests of the engine's container helpers that need no daemon: status texts and
// durations, signal names, bind specs, network modes, log sizes, config merging, names,
// list filters, and the json log reader across a rotation.
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EngineError } from "../http.ts";
import { initialState, type ContainerRecord } from "../store.ts";
import { commandOf, mergedConfig, networkModeOf, parseBind } from "./config.ts";
import { startFailureCode } from "./lifecycle.ts";
import { follow, LogCursor } from "./logfile.ts";
import { canonicalName, generateName } from "./names.ts";
import { parseLogSize, parseMaxFile } from "./rotation.ts";
import { parseSignal } from "./signals.ts";
import { commandText, humanDuration, listContainers, statusText } from "./views.ts";

const status = (err: unknown) => (err as EngineError).status;

test("humanDuration words durations as Go's units.HumanDuration", () => {
  assert.equal(humanDuration(500), "Less than a second");
  assert.equal(humanDuration(1000), "1 second");
  assert.equal(humanDuration(59_000), "59 seconds");
  assert.equal(humanDuration(60_000), "About a minute");
  assert.equal(humanDuration(5 * 60_000), "5 minutes");
  assert.equal(humanDuration(60 * 60_000), "About an hour");
  assert.equal(humanDuration(3 * 3_600_000), "3 hours");
  assert.equal(humanDuration(3 * 86_400_000), "3 days");
  assert.equal(humanDuration(20 * 86_400_000), "2 weeks");
  assert.equal(humanDuration(90 * 86_400_000), "3 months");
  assert.equal(humanDuration(800 * 86_400_000), "2 years");
});

function record(overrides: Partial<ContainerRecord> = {}): ContainerRecord {
  return {
    Id: "a".repeat(64),
    Name: "/web",
    Created: "2026-01-01T00:00:00.000Z",
    Path: "sh",
    Args: ["-c", "echo 'hi there'"],
    Config: { Image: "busybox", Labels: { tier: "web" } },
    HostConfig: {},
    Image: `sha256:${"b".repeat(64)}`,
    State: initialState(),
    RestartCount: 0,
    LogPath: "/nonexistent",
    ...overrides,
  };
}

test("statusText: created, up, paused, exited, restarting", () => {
  const now = Date.parse("2026-01-01T00:10:00.000Z");
  assert.equal(statusText(record(), now), "Created");
  const up = { ...initialState(), Status: "running" as const, Running: true, StartedAt: "2026-01-01T00:09:55.000Z" };
  assert.equal(statusText(record({ State: up }), now), "Up 5 seconds");
  assert.equal(statusText(record({ State: { ...up, Paused: true, Status: "paused" } }), now), "Up 5 seconds (Paused)");
  const exited = { ...initialState(), Status: "exited" as const, ExitCode: 3, StartedAt: "2026-01-01T00:00:01.000Z", FinishedAt: "2026-01-01T00:08:00.000Z" };
  assert.equal(statusText(record({ State: exited }), now), "Exited (3) 2 minutes ago");
  assert.equal(statusText(record({ State: { ...exited, Restarting: true, Running: true, Status: "restarting" } }), now), "Restarting (3) 2 minutes ago");
});

test("commandText quotes words a shell would split", () => {
  assert.equal(commandText(record()), "sh -c 'echo '\\''hi there'\\'''");
  assert.equal(commandText(record({ Path: "sleep", Args: ["300"] })), "sleep 300");
});

test("parseSignal takes names with or without SIG, any case, and numbers; refuses the rest", () => {
  assert.equal(parseSignal("KILL"), 9);
  assert.equal(parseSignal("sigterm"), 15);
  assert.equal(parseSignal("SIGUSR1"), 10);
  assert.equal(parseSignal("28"), 28);
  assert.equal(parseSignal("RTMIN+2"), 36);
  for (const bad of ["NOPE", "0", "65", "-1", ""]) assert.equal(status(captured(() => parseSignal(bad))), 400, bad);
});

function captured(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail("expected an error");
}

test("parseBind: host path, container path, modes; a named volume marked as one; bad names and modes refused", () => {
  assert.deepEqual(parseBind("/a:/b"), { source: "/a", destination: "/b", readOnly: false });
  assert.deepEqual(parseBind("/a:/b:ro"), { source: "/a", destination: "/b", readOnly: true });
  assert.deepEqual(parseBind("/a:/b:rw,rshared"), { source: "/a", destination: "/b", readOnly: false, propagation: "rshared" });
  assert.deepEqual(parseBind("vol:/data:ro"), { source: "vol", destination: "/data", readOnly: true, volume: true });
  for (const bad of ["-vol:/data", "./rel:/data", "/a", "/a:b", "/a:/", "/a:/b:xx", "/a:/b:ro:extra"]) assert.equal(status(captured(() => parseBind(bad))), 400, bad);
});

test("networkModeOf: none is a namespace of its own; host; container:<id>; default and bridge the bridge network; others a network by name", () => {
  assert.deepEqual(networkModeOf("none"), { mode: "private" });
  for (const mode of ["", "default", "bridge"]) assert.deepEqual(networkModeOf(mode), { mode: "network", ref: "bridge" });
  assert.deepEqual(networkModeOf("host"), { mode: "host" });
  assert.deepEqual(networkModeOf("container:web"), { mode: "container", ref: "web" });
  assert.deepEqual(networkModeOf("mynet"), { mode: "network", ref: "mynet" });
});

test("log sizes and file counts", () => {
  assert.equal(parseLogSize("10m"), 10 * 1024 * 1024);
  assert.equal(parseLogSize("512k"), 512 * 1024);
  assert.equal(parseLogSize("100"), 100);
  assert.equal(parseMaxFile(undefined), 1);
  assert.equal(parseMaxFile("3"), 3);
  for (const bad of ["", "ten", "0", "-1m"]) assert.equal(status(captured(() => parseLogSize(bad))), 400, bad);
  assert.equal(status(captured(() => parseMaxFile("0"))), 400);
});

test("mergedConfig lays the request over the image's defaults, as Docker combines entrypoint and cmd", () => {
  const image = { Env: ["PATH=/bin", "A=image"], Cmd: ["sh"], Entrypoint: null, WorkingDir: "/w", Labels: { from: "image" } };
  const id = "c".repeat(64);
  const plain = mergedConfig({ Image: "busybox", Env: ["A=mine", "B=1"], Labels: { mine: "1" } }, image, id);
  assert.deepEqual(plain.Env, ["PATH=/bin", "A=mine", "B=1"]);
  assert.deepEqual(plain.Cmd, ["sh"]);
  assert.equal(plain.WorkingDir, "/w");
  assert.equal(plain.Hostname, id.slice(0, 12));
  assert.deepEqual(plain.Labels, { from: "image", mine: "1" });
  // A given entrypoint drops the image's cmd.
  const withEntrypoint = mergedConfig({ Image: "busybox", Entrypoint: ["echo"] }, image, id);
  assert.deepEqual(commandOf(withEntrypoint), ["echo"]);
  assert.deepEqual(commandOf(mergedConfig({ Image: "busybox", Entrypoint: ["echo"], Cmd: ["hi"] }, { ...image, Entrypoint: ["/init"] }, id)), ["echo", "hi"]);
  assert.deepEqual(commandOf(mergedConfig({ Image: "busybox", Cmd: ["x"] }, { ...image, Entrypoint: ["/init"] }, id)), ["/init", "x"]);
  assert.equal(status(captured(() => commandOf(mergedConfig({ Image: "busybox", Cmd: [] }, image, id)))), 400);
});

test("names: canonical with one slash, Docker's alphabet, generated ones unique", () => {
  assert.equal(canonicalName("web"), "/web");
  assert.equal(canonicalName("/web.1_a-b"), "/web.1_a-b");
  for (const bad of ["", "-x", "a b", "a/b", "ü"]) assert.equal(status(captured(() => canonicalName(bad))), 400, bad);
  const taken = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const name = generateName((n) => taken.has(n));
    assert.match(name, /^\/[a-z]+_[a-z_]+(_[0-9a-f]{6})?$/);
    assert.ok(!taken.has(name));
    taken.add(name);
  }
});

test("startFailureCode maps the runtime's words as the CLI does", () => {
  assert.equal(startFailureCode('exec: "x": executable file not found in $PATH'), 127);
  assert.equal(startFailureCode("open /x: no such file or directory"), 127);
  assert.equal(startFailureCode("exec /etc: permission denied"), 126);
  assert.equal(startFailureCode("something else"), 128);
});

test("listContainers: running only by default, filters AND'ed, limit", () => {
  const running = record({ Id: "1".repeat(64), Name: "/run", Created: "2026-01-01T00:00:02.000Z", State: { ...initialState(), Status: "running", Running: true } });
  const exited = record({ Id: "2".repeat(64), Name: "/old", Created: "2026-01-01T00:00:01.000Z", State: { ...initialState(), Status: "exited", ExitCode: 1, StartedAt: "2026-01-01T00:00:01.000Z" } });
  const all = [running, exited];
  const names = (rs: ContainerRecord[]) => rs.map((r) => r.Name);
  const none = new Map<string, string[]>();
  const resolve = (ref: string) => all.find((r) => r.Name === `/${ref}`);
  assert.deepEqual(names(listContainers(all, none, false, -1, resolve)), ["/run"]);
  assert.deepEqual(names(listContainers(all, none, true, -1, resolve)), ["/run", "/old"]);
  assert.deepEqual(names(listContainers(all, new Map([["exited", ["1"]]]), false, -1, resolve)), ["/old"]);
  assert.deepEqual(names(listContainers(all, new Map([["label", ["tier=web"]], ["status", ["running"]]]), false, -1, resolve)), ["/run"]);
  assert.deepEqual(names(listContainers(all, none, true, 1, resolve)), ["/run"]);
  assert.deepEqual(names(listContainers(all, new Map([["before", ["run"]]]), false, -1, resolve)), ["/old"]);
  assert.equal(status(captured(() => listContainers(all, new Map([["status", ["sleeping"]]]), false, -1, resolve))), 400);
  assert.equal(status(captured(() => listContainers(all, new Map([["before", ["nosuch"]]]), false, -1, resolve))), 400);
});

test("the log reader follows a rotation and skips a torn line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-logfile-"));
  try {
    const log = join(dir, "c-json.log");
    const line = (text: string) => `${JSON.stringify({ log: `${text}\n`, stream: "stdout", time: "2026-01-01T00:00:00.000000000Z" })}\n`;
    writeFileSync(log, line("one") + "{torn\n" + line("two"));
    let end!: () => void;
    const done = new Promise<void>((r) => (end = r));
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of follow(new LogCursor(log), done)) seen.push(e.log.trim());
    })();
    // Wait for the reader to have taken in what is there, then rotate as the engine does.
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 10));
    appendFileSync(log, line("three"));
    renameSync(log, `${log}.1`);
    writeFileSync(log, line("four"));
    while (seen.length < 4) await new Promise((r) => setTimeout(r, 10));
    end();
    await reading;
    assert.deepEqual(seen, ["one", "two", "three", "four"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
