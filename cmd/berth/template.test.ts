// The --format evaluator: fields, functions, pipes, if/range, trim markers, Go's value
// printing, and the parse errors a malformed template gets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Template } from "./template.ts";
import { CliError } from "./errors.ts";

const render = (source: string, value: unknown) => new Template(source).render(value);

test("fields and nested fields print as Go prints them", () => {
  const v = { ID: "abc", State: { Running: true, Pid: 42 }, Env: ["A=1", "B=2"], Labels: { b: "2", a: "1" }, Nil: null };
  assert.equal(render("{{.ID}} {{.State.Running}} {{.State.Pid}}", v), "abc true 42");
  assert.equal(render("{{.Env}}", v), "[A=1 B=2]");
  assert.equal(render("{{.Labels}}", v), "map[a:1 b:2]");
  assert.equal(render("{{.Nil}} {{.Missing}} {{.State.Missing}}", v), "<nil> <no value> <no value>");
  assert.equal(render("{{.}}", "plain"), "plain");
});

test("json, index, join, upper, lower, len, split, printf, truncate and pipes", () => {
  const v = { Config: { Cmd: ["sh", "-c", "x"] }, Labels: { "com.example": "yes" }, Name: "/box" };
  assert.equal(render("{{json .Config.Cmd}}", v), '["sh","-c","x"]');
  assert.equal(render("{{json .}}", { a: 1 }), '{"a":1}');
  assert.equal(render('{{index .Labels "com.example"}}|{{index .Config.Cmd 1}}', v), "yes|-c");
  assert.equal(render('{{join .Config.Cmd ","}}', v), "sh,-c,x");
  assert.equal(render("{{upper .Name}} {{lower `ABC`}} {{len .Config.Cmd}}", v), "/BOX abc 3");
  assert.equal(render('{{split "a:b" ":"}}', v), "[a b]");
  assert.equal(render('{{printf "%s=%d %q" "n" 7 "x"}}', v), 'n=7 "x"');
  assert.equal(render("{{.Name | upper}} {{.Config.Cmd | json}}", v), '/BOX ["sh","-c","x"]');
  assert.equal(render("{{truncate .Name 2}}", v), "/b");
});

test("if/else and range, with trim markers", () => {
  const v = { Items: [{ N: 1 }, { N: 2 }], Empty: [], On: true, Off: "" };
  assert.equal(render("{{range .Items}}<{{.N}}>{{end}}", v), "<1><2>");
  assert.equal(render("{{range .Empty}}x{{else}}none{{end}}", v), "none");
  assert.equal(render("{{if .On}}yes{{else}}no{{end}} {{if .Off}}yes{{else}}no{{end}}", v), "yes no");
  assert.equal(render("a  {{- .On -}}  b", v), "atrueb");
});

test("methods of a row take arguments", () => {
  const row = { Label: (k: unknown) => (k === "app" ? "demo" : "") };
  assert.equal(render('{{.Label "app"}}', row), "demo");
});

test("malformed templates fail at parse time with a clear message", () => {
  for (const bad of ["{{.ID", "{{end}}", "{{if .X}}open", "{{else}}", "{{nosuch .X}}", "{{.A..B}}", "{{.X |}}"]) {
    assert.throws(() => new Template(bad), (err: unknown) => err instanceof CliError && /^template parsing error: /.test(err.message), bad);
  }
});
