// Heredocs (BuildKit's syntax): how the parser reads their bodies, what a RUN executes,
// how a COPY body is expanded; without a daemon.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, statSync, existsSync } from "node:fs";
import { join } from "node:path";
import { parseDockerfile } from "./dockerfile.ts";
import { expandBody, heredocRun, heredocSources, isHeredocWord } from "./heredoc.ts";

const sh = ["/bin/sh", "-c"];

test("bodies end at their delimiter; several on one line are read in order; the next instruction follows", () => {
  const file = parseDockerfile("FROM x\nRUN <<EOF\necho one\n\n# not a comment here\nEOF\nCOPY <<A <<-\"B\" /dir/\na $X\nA\n\tb\n\tB\nENV Z=1\n");
  assert.deepEqual(file.instructions.map((i) => i.keyword), ["FROM", "RUN", "COPY", "ENV"]);
  const run = file.instructions[1]!;
  assert.deepEqual(run.heredocs, [{ name: "EOF", marker: "<<EOF", content: "echo one\n\n# not a comment here\n", chomp: false, expand: true }]);
  const copy = file.instructions[2]!;
  assert.deepEqual(copy.heredocs!.map((h) => [h.name, h.content, h.chomp, h.expand]), [["A", "a $X\n", false, true], ["B", "\tb\n", true, false]]);
  assert.equal(file.instructions[3]!.line, 12);
});

test("no heredoc in exec form, in other instructions, or for <<<; an unterminated one names its line", () => {
  assert.equal(parseDockerfile('FROM x\nRUN ["cat", "<<EOF"]\n').instructions[1]!.heredocs, undefined);
  assert.equal(parseDockerfile("FROM x\nRUN cat <<<word\n").instructions[1]!.heredocs, undefined);
  assert.equal(parseDockerfile("FROM x\nLABEL a=<<EOF\n").instructions[1]!.heredocs, undefined);
  assert.throws(() => parseDockerfile("FROM x\n\nRUN <<EOF\necho\nEOFX\n"), /dockerfile parse error on line 3: unterminated heredoc: no line "EOF" ends the <<EOF started here/);
  assert.throws(() => parseDockerfile("FROM x\nONBUILD RUN <<EOF\necho\nEOF\n"), /dockerfile parse error on line 2: heredocs are not supported in ONBUILD triggers/);
});

test("RUN: a lone heredoc is the shell's script, <<- strips tabs, #! runs as its own file; otherwise the shell reads the heredoc", () => {
  const run = (text: string) => heredocRun(parseDockerfile(`FROM x\n${text}`).instructions[1]!, sh);
  assert.deepEqual(run("RUN <<EOF\necho a\necho b\nEOF\n").command, ["/bin/sh", "-c", "echo a\necho b\n"]);
  assert.deepEqual(run("RUN <<-EOF\n\techo a\n\tEOF\n").command, ["/bin/sh", "-c", "echo a\n"]);
  const script = run("RUN <<EOF\n#!/bin/busybox sh\necho s\nEOF\n");
  assert.deepEqual(script.command, ["/dev/pipes/EOF"]);
  assert.deepEqual(script.script, { path: "/dev/pipes/EOF", content: "#!/bin/busybox sh\necho s\n" });
  assert.match(script.createdBy, /echo s/);
  assert.deepEqual(run("RUN cat <<'EOF' > /f\n$HOME\nEOF\n").command, ["/bin/sh", "-c", "cat <<'EOF' > /f\n$HOME\nEOF"]);
});

test("COPY bodies: variables expanded unless quoted, quotes kept, \\$ literal; files named after delimiters, mode 0644", () => {
  const vars = new Map([["X", "ex"], ["EMPTY", ""]]);
  assert.equal(expandBody("a $X ${X} '${X}' \"q\" \\$X ${EMPTY:-d}\n", vars, "\\"), "a ex ex 'ex' \"q\" $X d\n");
  const step = parseDockerfile("FROM x\nCOPY <<A <<'B' /d/\n$X\nA\n$X\nB\n").instructions[1]!;
  assert.ok(isHeredocWord("<<A", step) && isHeredocWord("<<B", step) && !isHeredocWord("/d/", step));
  const sources = heredocSources(step, vars, "\\");
  try {
    assert.deepEqual(sources.names, ["A", "B"]);
    assert.equal(readFileSync(join(sources.dir, "A"), "utf8"), "ex\n");
    assert.equal(readFileSync(join(sources.dir, "B"), "utf8"), "$X\n");
    assert.equal(statSync(join(sources.dir, "A")).mode & 0o777, 0o644);
  } finally {
    sources.remove();
  }
  assert.equal(existsSync(sources.dir), false);
  const twice = parseDockerfile("FROM x\nCOPY <<A <<A /d/\n1\nA\n2\nA\n").instructions[1]!;
  assert.throws(() => heredocSources(twice, vars, "\\"), /two heredocs named A would be the same file/);
});
