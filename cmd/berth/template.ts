// --format: the part of Go's text/template people use with docker, evaluated here
// (not a Go template engine): text with {{…}} actions holding fields (`.`, `.A.B`),
// string/number literals, functions (json, index, join, upper, lower, title, len,
// split, truncate, printf with %s %d %v %q), pipes (`.X | json`), `{{if}}…{{else}}…{{end}}`
// and `{{range .X}}…{{end}}`, and the {{- -}} trim markers. Values print as Go prints
// them (`map[k:v]`, `[a b]`, `<nil>`, `<no value>` for a missing key).
import { CliError } from "./errors.ts";

type Value = unknown;

interface TextNode {
  kind: "text";
  text: string;
}
interface ActionNode {
  kind: "action";
  pipeline: Command[];
}
interface BlockNode {
  kind: "if" | "range";
  pipeline: Command[];
  body: Node[];
  otherwise: Node[];
}
type Node = TextNode | ActionNode | BlockNode;

type Operand = { kind: "field"; path: string[] } | { kind: "literal"; value: Value } | { kind: "func"; name: string };
type Command = Operand[];

const fail = (template: string, why: string) => new CliError(`template parsing error: template: ${template}: ${why}`);

/** Splits an action's text into words: quoted strings stay whole, `|` stands alone. */
function words(source: string, template: string): string[] {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|]+)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(source)) !== null) {
    out.push(m[1]!);
    if (re.lastIndex >= source.length) break;
  }
  if (source.trim() && out.join("").replace(/\s/g, "").length !== source.replace(/\s/g, "").length) throw fail(template, `cannot parse "${source}"`);
  return out;
}

function operand(word: string, template: string): Operand {
  if (word === ".") return { kind: "field", path: [] };
  if (word.startsWith(".")) {
    const path = word.slice(1).split(".");
    if (path.some((p) => !/^[A-Za-z_]\w*$/.test(p))) throw fail(template, `bad field "${word}"`);
    return { kind: "field", path };
  }
  if (word.startsWith('"')) return { kind: "literal", value: JSON.parse(word) as string };
  if (word.startsWith("`")) return { kind: "literal", value: word.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(word)) return { kind: "literal", value: Number(word) };
  if (word === "true" || word === "false") return { kind: "literal", value: word === "true" };
  if (word in functions) return { kind: "func", name: word };
  throw fail(template, `function "${word}" not defined`);
}

function pipeline(source: string, template: string): Command[] {
  const commands: Command[] = [[]];
  for (const word of words(source, template)) {
    if (word === "|") commands.push([]);
    else commands[commands.length - 1]!.push(operand(word, template));
  }
  if (commands.some((c) => c.length === 0)) throw fail(template, `missing value for command in "${source}"`);
  return commands;
}

/** Parses a template into nodes; malformed ones fail here, before any request is made. */
export function parseTemplate(template: string): Node[] {
  const root: Node[] = [];
  const stack: { node: BlockNode; inElse: boolean }[] = [];
  const target = (): Node[] => {
    const top = stack[stack.length - 1];
    return top ? (top.inElse ? top.node.otherwise : top.node.body) : root;
  };
  let rest = template;
  let trimNext = false;
  while (rest.length > 0) {
    const open = rest.indexOf("{{");
    let text = open < 0 ? rest : rest.slice(0, open);
    if (trimNext) text = text.replace(/^\s+/, "");
    if (open < 0) {
      if (text) target().push({ kind: "text", text });
      break;
    }
    const close = rest.indexOf("}}", open + 2);
    if (close < 0) throw fail(template, "unclosed action");
    let inner = rest.slice(open + 2, close);
    if (inner.startsWith("- ")) {
      text = text.replace(/\s+$/, "");
      inner = inner.slice(2);
    }
    trimNext = inner.endsWith(" -");
    if (trimNext) inner = inner.slice(0, -2);
    if (text) target().push({ kind: "text", text });
    rest = rest.slice(close + 2);
    const action = inner.trim();
    const keyword = /^(if|range|else|end)\b\s*(.*)$/s.exec(action);
    if (!keyword) {
      if (action.startsWith("/*")) continue;
      target().push({ kind: "action", pipeline: pipeline(action, template) });
      continue;
    }
    const [, word, args] = keyword;
    if (word === "if" || word === "range") {
      const node: BlockNode = { kind: word, pipeline: pipeline(args!, template), body: [], otherwise: [] };
      target().push(node);
      stack.push({ node, inElse: false });
    } else if (word === "else") {
      const top = stack[stack.length - 1];
      if (!top || top.inElse) throw fail(template, "unexpected {{else}}");
      top.inElse = true;
    } else {
      if (!stack.pop()) throw fail(template, "unexpected {{end}}");
    }
  }
  if (stack.length > 0) throw fail(template, "unexpected EOF (an {{end}} is missing)");
  return root;
}

const missing = Symbol("no value");

function field(value: Value, path: string[]): Value {
  let v: Value = value;
  for (const name of path) {
    if (v === null || v === undefined || v === missing) return missing;
    if (typeof v !== "object") throw new CliError(`template: can't evaluate field ${name} in type ${typeof v}`);
    const obj = v as Record<string, unknown>;
    v = name in obj ? obj[name] : missing;
  }
  return v;
}

/** A value as Go's fmt %v prints it. */
export function goString(v: Value): string {
  if (v === missing) return "<no value>";
  if (v === null || v === undefined) return "<nil>";
  if (Array.isArray(v)) return `[${v.map(goString).join(" ")}]`;
  if (typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `map[${entries.map(([k, x]) => `${k}:${goString(x)}`).join(" ")}]`;
  }
  return String(v);
}

function truthy(v: Value): boolean {
  if (v === missing || v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v as object).length > 0;
  return true;
}

function printf(format: unknown, ...args: unknown[]): string {
  let i = 0;
  return String(format).replace(/%([sdvq%])/g, (_, verb: string) => {
    if (verb === "%") return "%";
    const arg = args[i++];
    if (verb === "q") return JSON.stringify(goString(arg));
    if (verb === "d") return String(Math.trunc(Number(arg)));
    return goString(arg);
  });
}

const functions: Record<string, (...args: Value[]) => Value> = {
  json: (v) => (v === missing ? "null" : JSON.stringify(v ?? null)),
  index: (v, ...keys) => {
    let cur = v;
    for (const key of keys) {
      if (cur === null || cur === undefined || typeof cur !== "object") return missing;
      const obj = cur as Record<string, unknown>;
      cur = String(key) in obj ? obj[String(key)] : Array.isArray(cur) ? missing : "";
    }
    return cur;
  },
  join: (list, sep) => (Array.isArray(list) ? list.map(goString).join(String(sep)) : goString(list)),
  upper: (v) => goString(v).toUpperCase(),
  lower: (v) => goString(v).toLowerCase(),
  title: (v) => goString(v).replace(/\b\w/g, (c) => c.toUpperCase()),
  len: (v) => (Array.isArray(v) || typeof v === "string" ? v.length : v && typeof v === "object" ? Object.keys(v).length : 0),
  split: (v, sep) => goString(v).split(String(sep)),
  truncate: (v, n) => [...goString(v)].slice(0, Number(n)).join(""),
  printf: (format, ...args) => printf(format, ...args),
  print: (...args) => args.map(goString).join(""),
  println: (...args) => `${args.map(goString).join(" ")}\n`,
};

function evalPipeline(commands: Command[], dot: Value): Value {
  let piped: Value = missing;
  let hasPiped = false;
  for (const command of commands) {
    const args = command.slice(1).map((o) => evalOperand(o, dot));
    const head = command[0]!;
    if (head.kind === "func") {
      piped = functions[head.name]!(...args, ...(hasPiped ? [piped] : []));
    } else {
      const value = evalOperand(head, dot);
      // A method of the row (ps's `.Label "k"`) takes arguments like a function.
      if (typeof value === "function") piped = (value as (...a: Value[]) => Value)(...args, ...(hasPiped ? [piped] : []));
      else if (args.length > 0 || hasPiped) throw new CliError("template: can't give arguments to a non-function");
      else piped = value;
    }
    hasPiped = true;
  }
  return piped;
}

function evalOperand(o: Operand, dot: Value): Value {
  if (o.kind === "field") return field(dot, o.path);
  if (o.kind === "literal") return o.value;
  return functions[o.name]!();
}

function execute(nodes: Node[], dot: Value): string {
  let out = "";
  for (const node of nodes) {
    if (node.kind === "text") out += node.text;
    else if (node.kind === "action") out += goString(evalPipeline(node.pipeline, dot));
    else if (node.kind === "if") out += execute(truthy(evalPipeline(node.pipeline, dot)) ? node.body : node.otherwise, dot);
    else {
      const v = evalPipeline(node.pipeline, dot);
      const items = Array.isArray(v) ? v : v && typeof v === "object" ? Object.values(v) : [];
      if (items.length === 0) out += execute(node.otherwise, dot);
      for (const item of items) out += execute(node.body, item);
    }
  }
  return out;
}

export class Template {
  private readonly nodes: Node[];
  constructor(source: string) {
    this.nodes = parseTemplate(source);
  }
  render(value: unknown): string {
    return execute(this.nodes, value);
  }
}

/** Docker's named formats: "json" is one JSON object per line, "table" the default table. */
export function expandFormat(format: string): string {
  return format === "json" ? "{{json .}}" : format;
}
