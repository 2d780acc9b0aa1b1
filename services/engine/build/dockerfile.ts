// Dockerfile text → instructions. A small parser of our own (the npm candidates pull in a
// language-server stack for what is a line format): parser directives (`# escape=`,
// `# syntax=`), comments, line continuations, flags (`--from=…`), JSON (exec) vs shell
// forms, Docker's variable substitution ($VAR, ${VAR}, ${VAR:-d}, ${VAR:+a}, ${VAR:?e},
// ${VAR#p}, ${VAR%p}, ${VAR/p/r} and the forms without colon), and
// BuildKit's heredocs for RUN/COPY/ADD (the classic builder has none).
import { badRequest } from "../http.ts";
import { parseHealthcheck } from "./healthcheck.ts";

export const knownInstructions = new Set([
  "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
  "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
]);

export interface Instruction {
  keyword: string;
  /** The text after the keyword and its flags, continuations joined. */
  args: string;
  /** `--name=value` flags before the arguments. */
  flags: Map<string, string>;
  /** The exec form's array when the arguments are a JSON string array. */
  json: string[] | undefined;
  /** 1-based line of the instruction's first line. */
  line: number;
  /** As written (continuations joined), for `Step N/M : …`. */
  original: string;
  /** RUN/COPY/ADD heredocs (`<<EOF` … `EOF`) in the order their markers appear. */
  heredocs?: Heredoc[];
}

export interface Heredoc {
  /** The delimiter, quotes removed (COPY's file name). */
  name: string;
  /** The marker as written in the instruction (`<<-"EOF"`). */
  marker: string;
  /** The body's lines, each with its newline, as written (no tab stripping). */
  content: string;
  /** `<<-`: leading tabs stripped from the body's lines. */
  chomp: boolean;
  /** An unquoted delimiter: variables in the body are expanded. */
  expand: boolean;
}

const heredocKeywords = new Set(["RUN", "COPY", "ADD"]);

/** `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` (also after an fd number, `3<<EOF`), starting a word; never `<<<`. */
const heredocMarker = /(?<=^|\s)\d*<<(-?)(?:"([^"\s]+)"|'([^'\s]+)'|([^\s"'<>|&;()]+))/g;

/** The heredoc markers in a shell-form RUN/COPY/ADD, in order. */
function heredocMarkers(instruction: Instruction): Omit<Heredoc, "content">[] {
  if (!heredocKeywords.has(instruction.keyword) || instruction.json) return [];
  return [...instruction.args.matchAll(heredocMarker)].map((m) => ({
    name: m[2] ?? m[3] ?? m[4]!,
    marker: m[0],
    chomp: m[1] === "-",
    expand: m[4] !== undefined,
  }));
}

/** Reads the bodies of `markers` from lines[index…]; returns the heredocs and the index after the last terminator. */
function readHeredocs(lines: string[], index: number, markers: Omit<Heredoc, "content">[], line: number): { heredocs: Heredoc[]; next: number } {
  const heredocs: Heredoc[] = [];
  for (const marker of markers) {
    const body: string[] = [];
    for (;;) {
      if (index >= lines.length) throw parseError(line, `unterminated heredoc: no line ${JSON.stringify(marker.name)} ends the ${marker.marker} started here`);
      const text = lines[index++]!;
      if ((marker.chomp ? text.replace(/^\t+/, "") : text) === marker.name) break;
      body.push(`${text}\n`);
    }
    heredocs.push({ ...marker, content: body.join("") });
  }
  return { heredocs, next: index };
}

export interface Dockerfile {
  escape: string;
  instructions: Instruction[];
}

function parseError(line: number, message: string): Error {
  return badRequest(`dockerfile parse error on line ${line}: ${message}`);
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  let escape = "\\";
  let index = 0;
  // Directives only at the very top, before any other comment or instruction.
  const seen = new Set<string>();
  for (; index < lines.length; index++) {
    const m = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/.exec(lines[index]!);
    if (!m) break;
    const key = m[1]!.toLowerCase();
    if (key !== "escape" && key !== "syntax" && key !== "check") break;
    if (seen.has(key)) throw parseError(index + 1, `only one ${key} parser directive can be used`);
    seen.add(key);
    if (key === "escape") {
      if (m[2] !== "\\" && m[2] !== "`") throw parseError(index + 1, `invalid escape token '${m[2]}' does not match ` + "` or \\");
      escape = m[2]!;
    }
  }
  const instructions: Instruction[] = [];
  while (index < lines.length) {
    const first = lines[index]!;
    const start = index + 1;
    index++;
    if (/^\s*(#|$)/.test(first)) continue;
    let joined = "";
    let current = first;
    for (;;) {
      const trimmed = current.replace(/\s+$/, "");
      if (trimmed.endsWith(escape)) {
        joined += trimmed.slice(0, -1);
        // Comment and empty lines inside a continued instruction are dropped.
        while (index < lines.length && /^\s*(#|$)/.test(lines[index]!)) index++;
        if (index >= lines.length) break;
        current = lines[index]!;
        index++;
        continue;
      }
      joined += current;
      break;
    }
    const instruction = parseInstruction(joined.trim(), start);
    const markers = heredocMarkers(instruction);
    if (markers.length > 0) {
      const { heredocs, next } = readHeredocs(lines, index, markers, start);
      instruction.heredocs = heredocs;
      index = next;
    }
    instructions.push(instruction);
  }
  return { escape, instructions };
}

function parseInstruction(text: string, line: number): Instruction {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(text)!;
  const keyword = m[1]!.toUpperCase();
  if (!knownInstructions.has(keyword)) throw parseError(line, `unknown instruction: ${m[1]}`);
  let rest = m[2]!;
  const flags = new Map<string, string>();
  if (["FROM", "COPY", "ADD", "RUN", "HEALTHCHECK"].includes(keyword)) {
    for (;;) {
      const f = /^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?\s*/.exec(rest);
      if (!f) break;
      flags.set(f[1]!, f[2] ?? "true");
      rest = rest.slice(f[0].length);
    }
  }
  let json: string[] | undefined;
  if (rest.startsWith("[")) {
    try {
      const value: unknown = JSON.parse(rest);
      if (Array.isArray(value) && value.every((v) => typeof v === "string")) json = value as string[];
    } catch {
      // not JSON: the shell form, as Docker falls back
    }
  }
  if (rest === "" && !["RUN", "CMD", "ENTRYPOINT"].includes(keyword)) throw parseError(line, `${keyword} requires at least one argument`);
  const instruction: Instruction = { keyword, args: rest, flags, json, line, original: text };
  checkInstruction(instruction);
  return instruction;
}

/** What can be refused from the text alone, before any step runs (Docker's parse-time errors). */
function checkInstruction(instruction: Instruction): void {
  const { keyword, args, flags, line } = instruction;
  if (keyword === "ONBUILD") {
    const trigger = /^\S+/.exec(args)![0].toUpperCase();
    if (trigger === "ONBUILD") throw parseError(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    if (trigger === "FROM" || trigger === "MAINTAINER") throw parseError(line, `${trigger} isn't allowed as an ONBUILD trigger`);
    const parsed = parseInstruction(args, line);
    if (heredocMarkers(parsed).length > 0) throw parseError(line, "heredocs are not supported in ONBUILD triggers: the trigger is one line");
  }
  if (keyword === "HEALTHCHECK") {
    try {
      parseHealthcheck(args, flags);
    } catch (err) {
      throw parseError(line, (err as Error).message);
    }
  }
}

/**
 * Docker's word processing: variables substituted (not inside single quotes), quotes
 * removed, escapes applied; split on unquoted whitespace when `split`.
 */
export function processWords(text: string, vars: ReadonlyMap<string, string>, escape: string, split: boolean): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
      continue;
    }
    if (c === escape && i + 1 < text.length) {
      const next = text[++i]!;
      // Inside double quotes an escape only escapes what would be special there.
      if (quote === '"' && !['"', "$", escape].includes(next)) word += c;
      word += next;
      inWord = true;
      continue;
    }
    if (c === "$") {
      const [value, consumed] = expandAt(text, i, vars, escape);
      word += value;
      i += consumed - 1;
      inWord = true;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = undefined;
      else word += c;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
      continue;
    }
    if (split && /\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      continue;
    }
    word += c;
    inWord = true;
  }
  if (quote) throw badRequest(`unexpected end of statement while looking for matching ${quote}`);
  if (inWord || !split) words.push(word);
  return words;
}

/** The text as one word: variables substituted, quotes removed (WORKDIR, USER, a legacy ENV value). */
export function expandText(text: string, vars: ReadonlyMap<string, string>, escape: string): string {
  return processWords(text, vars, escape, false)[0] ?? "";
}

/** The modifiers of `${NAME<modifier>word}` Docker's shell lexer knows (`:` forms treat empty as unset). */
const modifiers = new Set([":-", ":+", ":?", "-", "+", "?", "#", "##", "%", "%%", "/", "//"]);

/**
 * Where the word of a `${…}` that starts at text[from] ends: the index of the first `stop`
 * character outside nested `${…}` and not escaped.
 */
function wordEnd(text: string, from: number, stop: string, escape: string): number {
  let depth = 0;
  for (let k = from; k < text.length; k++) {
    const c = text[k]!;
    if (c === escape) k++;
    else if (c === "$" && text[k + 1] === "{") {
      depth++;
      k++;
    } else if (c === "}" && depth > 0) depth--;
    else if (c === stop && depth === 0) return k;
  }
  return -1;
}

/** A shell pattern (`*`, `?`, `[…]`, escapes) as a regular expression source. */
function patternSource(pattern: string): string {
  let out = "";
  for (let k = 0; k < pattern.length; k++) {
    const c = pattern[k]!;
    if (c === "*") out += "[\\s\\S]*";
    else if (c === "?") out += "[\\s\\S]";
    else if (c === "\\" && k + 1 < pattern.length) out += pattern[++k]!.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    else if (c === "[") {
      const close = pattern.indexOf("]", k + 2);
      if (close < 0) out += "\\[";
      else {
        out += `[${pattern.slice(k + 1, close).replace(/^!/, "^").replace(/\\/g, "\\\\")}]`;
        k = close;
      }
    } else out += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return out;
}

/** `${V#p}`/`${V##p}` (prefix) and `${V%p}`/`${V%%p}` (suffix): the shortest or longest match removed. */
function trimmed(value: string, pattern: string, fromStart: boolean, longest: boolean): string {
  const whole = new RegExp(`^(?:${patternSource(pattern)})$`);
  const lengths = [...Array(value.length + 1).keys()];
  if (longest) lengths.reverse();
  for (const n of lengths) {
    const part = fromStart ? value.slice(0, n) : value.slice(value.length - n);
    if (whole.test(part)) return fromStart ? value.slice(n) : value.slice(0, value.length - n);
  }
  return value;
}

/** The variable reference at text[i] ('$'): its value and how many characters it took. */
function expandAt(text: string, i: number, vars: ReadonlyMap<string, string>, escape: string): [string, number] {
  const simple = /^\$([a-zA-Z_][a-zA-Z0-9_]*)/.exec(text.slice(i));
  if (simple) return [vars.get(simple[1]!) ?? "", simple[0].length];
  if (text[i + 1] !== "{") return ["$", 1];
  const name = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i + 2))?.[0];
  if (!name) {
    if (i + 2 >= text.length) throw badRequest(`syntax error: missing '}' in ${JSON.stringify(text)}`);
    throw badRequest(`syntax error: bad substitution in ${JSON.stringify(text)}`);
  }
  let k = i + 2 + name.length;
  if (k >= text.length) throw badRequest(`syntax error: missing '}' in ${JSON.stringify(text)}`);
  const set = vars.has(name);
  const value = vars.get(name) ?? "";
  if (text[k] === "}") return [value, k + 1 - i];
  let modifier = text[k] === ":" ? text.slice(k, k + 2) : text[k]!;
  if (["#", "%", "/"].includes(modifier) && text[k + 1] === modifier) modifier += modifier;
  if (!modifiers.has(modifier)) throw badRequest(`unsupported modifier (${modifier}) in substitution: ${JSON.stringify(text)}`);
  k += modifier.length;
  if (modifier === "/" || modifier === "//") {
    const slash = wordEnd(text, k, "/", escape);
    if (slash < 0) throw badRequest(`syntax error: missing '/' in \${} in ${JSON.stringify(text)}`);
    const close = wordEnd(text, slash + 1, "}", escape);
    if (close < 0) throw badRequest(`syntax error: missing '}' in ${JSON.stringify(text)}`);
    const pattern = new RegExp(patternSource(expandText(text.slice(k, slash), vars, escape)), modifier === "//" ? "g" : "");
    const replacement = expandText(text.slice(slash + 1, close), vars, escape);
    return [value.replace(pattern, () => replacement), close + 1 - i];
  }
  const close = wordEnd(text, k, "}", escape);
  if (close < 0) throw badRequest(`syntax error: missing '}' in ${JSON.stringify(text)}`);
  const word = () => expandText(text.slice(k, close), vars, escape);
  const used = close + 1 - i;
  const unset = !set || (modifier.startsWith(":") && value === "");
  switch (modifier) {
    case "-":
    case ":-":
      return [unset ? word() : value, used];
    case "+":
    case ":+":
      return [unset ? "" : word(), used];
    case "?":
    case ":?":
      if (unset) throw badRequest(`${name}: ${word() || (set ? "is not allowed to be empty" : "is not allowed to be unset")}`);
      return [value, used];
    default:
      return [trimmed(value, word(), modifier.startsWith("#"), modifier.length === 2), used];
  }
}

/** `key=value …` pairs (ENV, LABEL, ARG), or the legacy `ENV key value` form. */
export function keyValues(text: string, vars: ReadonlyMap<string, string>, escape: string, legacyAllowed: boolean): [string, string][] {
  const firstWord = /^\S+/.exec(text)?.[0] ?? "";
  if (legacyAllowed && !firstWord.includes("=")) {
    const value = text.slice(firstWord.length).trim();
    if (!value) throw badRequest(`ENV names can not be blank: ${text} needs a value`);
    return [[firstWord, expandText(value, vars, escape)]];
  }
  return processWords(text, vars, escape, true).map((word) => {
    const eq = word.indexOf("=");
    if (eq <= 0) throw badRequest(`Syntax error - can't find = in "${word}". Must be of the form: name=value`);
    return [word.slice(0, eq), word.slice(eq + 1)];
  });
}
