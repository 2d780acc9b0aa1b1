// The Dockerfile parser and Docker's word processing, without a daemon.
import { test } from "node:test";
import assert from "node:assert/strict";
import { expandText, keyValues, parseDockerfile, processWords } from "./dockerfile.ts";
import { EngineError } from "../http.ts";

const vars = new Map([["A", "1"], ["EMPTY", ""], ["SP", "a b"]]);

test("continuations, comments inside them, flags and the exec form", () => {
  const file = parseDockerfile("# a comment\nFROM busybox AS b\nRUN echo one \\\n# dropped\n  two\nCOPY --from=b --chown=1:2 [\"a b\", \"/c\"]\ncmd [\"sh\"]\n");
  assert.deepEqual(file.instructions.map((i) => i.keyword), ["FROM", "RUN", "COPY", "CMD"]);
  assert.equal(file.instructions[1]!.args, "echo one   two");
  assert.equal(file.instructions[1]!.line, 3);
  assert.deepEqual([...file.instructions[2]!.flags], [["from", "b"], ["chown", "1:2"]]);
  assert.deepEqual(file.instructions[2]!.json, ["a b", "/c"]);
  assert.deepEqual(file.instructions[3]!.json, ["sh"]);
});

test("the escape directive changes the continuation character", () => {
  const file = parseDockerfile("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n");
  assert.equal(file.escape, "`");
  assert.equal(file.instructions[1]!.args, "dir c:\\   && echo");
});

test("an unknown instruction or a missing argument names the line", () => {
  assert.throws(() => parseDockerfile("FROM x\n\nBOGUS y\n"), (err: Error) => err instanceof EngineError && err.message === "dockerfile parse error on line 3: unknown instruction: BOGUS");
  assert.throws(() => parseDockerfile("FROM x\nWORKDIR\n"), /line 2: WORKDIR requires at least one argument/);
  assert.throws(() => parseDockerfile("# escape=x\nFROM x\n"), /invalid escape token/);
});

test("substitution: $V, ${V}, defaults and alternatives, single quotes kept literal", () => {
  assert.equal(expandText("$A-${A}-${NONE:-d}-${EMPTY:-e}-${A:+alt}-${NONE:+alt}", vars, "\\"), "1-1-d-e-alt-");
  assert.equal(expandText("'$A' \"$A\" \\$A", vars, "\\"), "$A 1 $A");
  assert.deepEqual(processWords("x \"$SP\" 'y z'", vars, "\\", true), ["x", "a b", "y z"]);
  assert.throws(() => expandText("${A", vars, "\\"), /missing '}'/);
  assert.throws(() => processWords("'open", vars, "\\", true), /matching '/);
});

test("substitution as Docker's lexer: forms without colon, :?, nesting, prefix/suffix trims, replacements", () => {
  const v = new Map([["A", "1"], ["EMPTY", ""], ["PATHS", "/usr/local/bin:/usr/bin:/bin"], ["FILE", "archive.tar.gz"]]);
  const x = (t: string) => expandText(t, v, "\\");
  assert.equal(x("${EMPTY-d}|${NONE-d}|${EMPTY:-d}|${EMPTY+a}|${NONE+a}|${EMPTY:+a}"), "|d|d|a||");
  assert.equal(x("${NONE:-${A}}|${NONE:-${ALSO:-deep}}|${A:+<${A}>}"), "1|deep|<1>");
  assert.equal(x("${A:?must be set}|${EMPTY?}"), "1|");
  assert.throws(() => x("${NONE?}"), /^Error: NONE: is not allowed to be unset$/);
  assert.throws(() => x("${EMPTY:?}"), /EMPTY: is not allowed to be empty/);
  assert.throws(() => x("${NONE:?give it a value}"), /NONE: give it a value/);
  assert.equal(x("${FILE#*.}|${FILE##*.}|${FILE%.*}|${FILE%%.*}|${FILE#nomatch}"), "tar.gz|gz|archive.tar|archive|archive.tar.gz");
  assert.equal(x("${PATHS/:/;}|${PATHS//:/;}|${PATHS//\\/usr/}|${FILE/a?c/X}"), "/usr/local/bin;/usr/bin:/bin|/usr/local/bin;/usr/bin;/bin|/local/bin:/bin:/bin|Xhive.tar.gz");
  assert.throws(() => x("${A:#x}"), /unsupported modifier \(:#\) in substitution/);
  assert.throws(() => x("${A!x}"), /unsupported modifier \(!\) in substitution/);
  assert.throws(() => x("${}"), /bad substitution/);
  assert.throws(() => x("${A:-x"), /missing '}'/);
  assert.throws(() => x("${A/x}"), /missing '\/'/);
});

test("key=value pairs and the legacy ENV form", () => {
  assert.deepEqual(keyValues("A=1 B=\"two words\" C=$A", vars, "\\", true), [["A", "1"], ["B", "two words"], ["C", "1"]]);
  assert.deepEqual(keyValues("NAME some value $A", vars, "\\", true), [["NAME", "some value 1"]]);
  assert.throws(() => keyValues("A=1 B", vars, "\\", false), /can't find = in "B"/);
});
