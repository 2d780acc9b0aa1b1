// Which stages a target needs and what each waits for; the ordered output of stages that
// run at once. Without a daemon.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDockerfile } from "./dockerfile.ts";
import { OrderedOutput, planStages, triggerCopySources, type StageLike } from "./stages.ts";

/** The stages of a Dockerfile and their FROM references, as the builder splits them. */
function stagesOf(text: string): { stages: StageLike[]; froms: string[] } {
  const stages: StageLike[] = [];
  const froms: string[] = [];
  for (const i of parseDockerfile(text).instructions) {
    if (i.keyword === "FROM") {
      const words = i.args.split(/\s+/);
      stages.push({ name: words[2]?.toLowerCase(), steps: [] });
      froms.push(words[0]!);
    } else stages.at(-1)!.steps.push(i);
  }
  return { stages, froms };
}

test("the target's stages: FROM and COPY --from (by name or index) count, unused stages are left out", () => {
  const { stages, froms } = stagesOf(
    [
      "FROM busybox AS base",
      "FROM busybox AS unused",
      "RUN exit 1",
      "FROM base AS left",
      "FROM busybox AS right",
      "FROM busybox AS final",
      "COPY --from=left /a /a",
      "COPY --from=3 /b /b",
      "COPY --from=busybox /c /c",
      "FROM final AS after",
    ].join("\n"),
  );
  const plan = planStages(stages, 5, (i) => froms[i]!);
  assert.deepEqual(plan.order, [0, 2, 3, 4, 5]);
  assert.deepEqual([...plan.deps].sort((a, b) => a[0] - b[0]), [[0, []], [2, [0]], [3, []], [4, [2, 3]], [5, [4]]]);
  assert.deepEqual(planStages(stages, 2, (i) => froms[i]!).order, [0, 2]);
});

test("a name only refers to an earlier stage (a later one with that name is an image), the latest first", () => {
  const { stages, froms } = stagesOf("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nFROM busybox AS a\nFROM a\nCOPY --from=a /y /y\n");
  const plan = planStages(stages, 3, (i) => froms[i]!);
  assert.deepEqual(plan.order, [2, 3]);
  assert.deepEqual(plan.deps.get(0), undefined);
  assert.deepEqual(planStages(stages, 0, (i) => froms[i]!).deps.get(0), []);
});

test("a base's ONBUILD COPY --from schedules the stage it names (by name or index); other texts add nothing", () => {
  const { stages, froms } = stagesOf("FROM busybox AS assets\nFROM busybox AS tools\nFROM busybox AS unused\nFROM onbuild-base\n");
  assert.deepEqual(planStages(stages, 3, (i) => froms[i]!).order, [3]);
  const sources = triggerCopySources(["COPY --from=assets /a /a", "ADD --from=1 /t /t", "RUN echo --from=unused", "COPY local /l", "NOT AN INSTRUCTION"]);
  assert.deepEqual(sources, ["assets", "1"]);
  const plan = planStages(stages, 3, (i) => froms[i]!, (i) => (i === 3 ? sources : []));
  assert.deepEqual(plan.order, [0, 1, 3]);
  assert.deepEqual(plan.deps.get(3), [0, 1]);
});

test("ordered output: the first unfinished stage writes through, later ones wait their turn", () => {
  const written: string[] = [];
  const out = new OrderedOutput(3, (t) => written.push(t));
  const [a, b, c] = [out.writer(0), out.writer(1), out.writer(2)];
  a("a1");
  c("c1");
  b("b1");
  c("c2");
  assert.deepEqual(written, ["a1"]);
  out.finish(2);
  assert.deepEqual(written, ["a1"], "a later stage that finished still waits");
  a("a2");
  out.finish(0);
  assert.deepEqual(written, ["a1", "a2", "b1"]);
  b("b2");
  out.finish(1);
  assert.deepEqual(written, ["a1", "a2", "b1", "b2", "c1", "c2"]);
});

test("ordered output after a failure: everything written so far, in stage order", () => {
  const written: string[] = [];
  const out = new OrderedOutput(3, (t) => written.push(t));
  out.writer(2)("c");
  out.writer(1)("b");
  out.writer(0)("a");
  out.flushAll();
  assert.deepEqual(written, ["a", "b", "c"]);
});
