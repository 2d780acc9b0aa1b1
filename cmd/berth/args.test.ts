// docker-style command lines: combined short flags, values attached or separate,
// repeated list flags, `--`, stopping at the first argument, and the errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseArgs, type CommandSpec } from "./args.ts";
import { UsageError } from "./errors.ts";

const spec: CommandSpec = {
  usage: "run",
  description: "",
  stopAtFirstArg: true,
  minArgs: 1,
  flags: [
    { name: "interactive", short: "i", kind: "bool", description: "" },
    { name: "tty", short: "t", kind: "bool", description: "" },
    { name: "env", short: "e", kind: "list", description: "" },
    { name: "name", kind: "string", description: "" },
  ],
};

test("short flags combine, values attach or follow, lists repeat", () => {
  const p = parseArgs(spec, "run", ["-it", "-eA=1", "-e", "B=2", "--env=C=3", "--name", "x", "img", "sh", "-c", "ls -l"]);
  assert.equal(p.flags.get("interactive"), true);
  assert.equal(p.flags.get("tty"), true);
  assert.deepEqual(p.flags.get("env"), ["A=1", "B=2", "C=3"]);
  assert.equal(p.flags.get("name"), "x");
  assert.deepEqual(p.args, ["img", "sh", "-c", "ls -l"], "flags after the image belong to the command");
});

test("booleans take =false, -- ends flags", () => {
  const p = parseArgs(spec, "run", ["--tty=false", "--", "-img"]);
  assert.equal(p.flags.get("tty"), false);
  assert.deepEqual(p.args, ["-img"]);
});

test("interspersed commands take flags after arguments", () => {
  const p = parseArgs({ ...spec, stopAtFirstArg: false }, "rm", ["a", "-i", "b"]);
  assert.deepEqual(p.args, ["a", "b"]);
  assert.equal(p.flags.get("interactive"), true);
});

test("unknown flags, missing values and argument counts are usage errors", () => {
  const fails = (argv: string[], message: RegExp, code: number) =>
    assert.throws(() => parseArgs(spec, "run", argv), (e: unknown) => e instanceof UsageError && message.test(e.message) && e.exitCode === code, argv.join(" "));
  fails(["--bogus", "img"], /^unknown flag: --bogus$/, 125);
  fails(["-Z", "img"], /^unknown shorthand flag: 'Z' in -Z$/, 125);
  fails(["--name"], /^flag needs an argument: --name$/, 125);
  fails(["--tty=maybe", "img"], /invalid argument "maybe" for "--tty" flag/, 125);
  fails([], /"berth run" requires at least 1 argument/, 1);
});
