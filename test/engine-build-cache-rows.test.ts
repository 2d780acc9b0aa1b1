// The build cache's rows as `docker system df -v` and the API show them (each step's
// parent entry in Parents), and `docker builder prune`'s filters on those rows: id,
// parent, type, description, inuse, shared, private, unused-for; what Docker refuses.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ok, type Daemon } from "./harness.ts";
import { engineHttpText, startEngineWithBusybox } from "./fixtures/engine-session.ts";
import { writeContext, classicBuild, endBuildTests } from "./fixtures/build.ts";

let d: Daemon;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "berth-build-cache-rows-"));
  d = await startEngineWithBusybox();
});

after(() => endBuildTests(d, work));

interface CacheRow {
  ID: string;
  Parent?: string;
  Parents?: string[];
  Type: string;
  Description: string;
  InUse: boolean;
  Shared: boolean;
}

async function cacheRows(): Promise<CacheRow[]> {
  const r = await engineHttpText(d, "GET", "/v1.41/system/df");
  assert.equal(r.status, 200, r.body);
  return (JSON.parse(r.body) as { BuildCache: CacheRow[] }).BuildCache;
}

const rowOf = (rows: CacheRow[], text: string) => rows.find((r) => r.Description.includes(text));
const prune = (...filters: string[]) => ok(d.docker(["builder", "prune", "-f", ...filters.flatMap((f) => ["--filter", f])]), `builder prune ${filters.join(" ")}`).stdout;

/** A failed build: its finished steps stay as cache no image shares. */
function leaveSteps(name: string, marker: string): void {
  const dir = writeContext(work, name, { Dockerfile: `FROM busybox\nLABEL step=${marker}\nRUN echo ${marker} > /${marker}\nENV M=${marker}\nRUN exit 1\n` });
  assert.equal(classicBuild(d, dir, []).code, 1);
}

describe("build cache rows", () => {
  test("each step's row names the step it was built on in Parents (and Parent for API 1.41)", async () => {
    leaveSteps("chain", "chain");
    const rows = await cacheRows();
    const label = rowOf(rows, "LABEL step=chain")!;
    const run = rowOf(rows, "echo chain > /chain")!;
    const env = rowOf(rows, "ENV M=chain")!;
    assert.ok(label && run && env, JSON.stringify(rows));
    // busybox is an image, not a cache entry: the first step has no parent row.
    assert.equal(label.Parents, undefined);
    assert.equal(label.Parent, undefined);
    assert.deepEqual([run.Parents, run.Parent], [[label.ID], label.ID]);
    assert.deepEqual([env.Parents, env.Parent], [[run.ID], run.ID]);
    const verbose = ok(d.docker(["system", "df", "-v"]), "df -v").stdout;
    assert.match(verbose, new RegExp(`^${env.ID.slice(0, 12)}\\s+regular\\s+0B\\s+`, "m"));
  });

  test("builder prune filters: parent, id, description, type, inuse, private/shared, unused-for", async () => {
    leaveSteps("filters", "filt");
    let rows = await cacheRows();
    const label = rowOf(rows, "LABEL step=filt")!;
    const run = rowOf(rows, "echo filt > /filt")!;
    const env = rowOf(rows, "ENV M=filt")!;

    // parent: only the children of that entry.
    let out = prune(`parent=${run.ID}`);
    assert.match(out, new RegExp(`^${env.ID}$`, "m"));
    assert.doesNotMatch(out, new RegExp(`${run.ID}|${label.ID}`));
    rows = await cacheRows();
    assert.ok(!rowOf(rows, "ENV M=filt") && rowOf(rows, "echo filt > /filt"));

    // Filters that select nothing delete nothing.
    for (const f of ["type=frozen", `description=nothing like it`, "inuse=true", "shared=true", "private=false", "unused-for=1h", "id=^nomatch"]) {
      assert.match(prune(f), /^Total reclaimed space: 0B$/m, f);
    }
    assert.equal((await cacheRows()).length, rows.length);

    // description is the step's created_by, exactly.
    out = prune(`description=${run.Description}`);
    assert.match(out, new RegExp(`^${run.ID}$`, "m"));
    assert.doesNotMatch(out, new RegExp(label.ID));

    // id is a regular expression on the ID; with type, inuse and private all holding.
    out = prune(`id=^${label.ID.slice(0, 16)}`, "type=regular", "inuse=false", "private=true");
    assert.match(out, new RegExp(`^${label.ID}$`, "m"));
    assert.equal(rowOf(await cacheRows(), "step=filt"), undefined);
  });

  test("bad builder prune filters are 400s naming the problem", async () => {
    const cases: [Record<string, string[]>, RegExp][] = [
      [{ until: ["1h"], "unused-for": ["2h"] }, /^conflicting filters: "until" and "unused-for"$/],
      [{ id: ["a", "b"] }, /^filters expect only one value$/],
      [{ inuse: ["maybe"] }, /^invalid filter value for inuse: "maybe" is not a boolean/],
      [{ id: ["("] }, /^invalid filter value for id: /],
      [{ "unused-for": ["someday"] }, /invalid time value "someday"/],
    ];
    for (const [filters, expected] of cases) {
      const r = await engineHttpText(d, "POST", `/v1.41/build/prune?filters=${encodeURIComponent(JSON.stringify(filters))}`);
      assert.equal(r.status, 400, JSON.stringify(filters));
      assert.match((JSON.parse(r.body) as { message: string }).message, expected, JSON.stringify(filters));
    }
  });
});
