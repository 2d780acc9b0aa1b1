// Docker-style command lines (spf13/pflag's rules, which users' muscle memory follows):
// short flags combine (`-it`), values follow a flag as the next word or after `=` (or,
// for a short flag, directly: `-eK=V`), list flags repeat, `--` ends flags. Commands that
// run another command (run, exec, create) stop at their first positional argument, so
// `berth run img sh -c 'ls -l'` leaves `-c` to the container.
import { UsageError } from "./errors.ts";

export type FlagKind = "bool" | "string" | "list";

export interface FlagSpec {
  /** Long name without dashes. */
  name: string;
  short?: string;
  kind: FlagKind;
  description: string;
  /** Shown in help for string flags, e.g. "string", "list", "int". */
  value?: string;
  default?: string;
}

export interface CommandSpec {
  /** e.g. "ps [OPTIONS]" */
  usage: string;
  description: string;
  flags: FlagSpec[];
  /** Flags may only come before the first positional argument. */
  stopAtFirstArg?: boolean;
  minArgs?: number;
  maxArgs?: number;
}

export interface Parsed {
  args: string[];
  /** Present only for flags given; bool → true/false, string → last value, list → every value. */
  flags: Map<string, boolean | string | string[]>;
}

function parseBool(flag: string, text: string, command: string): boolean {
  const v = text.toLowerCase();
  if (["1", "t", "true"].includes(v)) return true;
  if (["0", "f", "false"].includes(v)) return false;
  throw new UsageError(`invalid argument "${text}" for "${flag}" flag: strconv.ParseBool: parsing "${text}": invalid syntax`, command);
}

/** Parses `argv` (the words after the command name) against the spec. */
export function parseArgs(spec: CommandSpec, command: string, argv: readonly string[]): Parsed {
  const flags: Parsed["flags"] = new Map();
  const args: string[] = [];
  const byLong = new Map(spec.flags.map((f) => [f.name, f]));
  const byShort = new Map(spec.flags.filter((f) => f.short).map((f) => [f.short!, f]));
  const withHelp = (f: FlagSpec | undefined, word: string): FlagSpec => {
    if (f) return f;
    if (word === "help" || word === "h") return { name: "help", kind: "bool", description: "" };
    throw new UsageError(`unknown ${word.length === 1 ? "shorthand flag" : "flag"}: ${word.length === 1 ? `'${word}' in -${word}` : `--${word}`}`, command);
  };
  const set = (f: FlagSpec, value: string | true, shown: string) => {
    if (f.kind === "bool") flags.set(f.name, value === true ? true : parseBool(shown, value, command));
    else if (f.kind === "list") flags.set(f.name, [...((flags.get(f.name) as string[] | undefined) ?? []), value as string]);
    else flags.set(f.name, value as string);
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (word.startsWith("--") && word.length > 2) {
      const eq = word.indexOf("=");
      const name = eq > 0 ? word.slice(2, eq) : word.slice(2);
      const f = withHelp(byLong.get(name), name);
      if (eq > 0) set(f, word.slice(eq + 1), `--${name}`);
      else if (f.kind === "bool") set(f, true, `--${name}`);
      else {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: --${name}`, command);
        set(f, argv[++i]!, `--${name}`);
      }
      continue;
    }
    if (word.startsWith("-") && word.length > 1) {
      // -abc: every letter a flag until one takes a value (the rest of the word, or the next word).
      for (let j = 1; j < word.length; j++) {
        const letter = word[j]!;
        const f = withHelp(byShort.get(letter), letter);
        if (f.kind === "bool") {
          if (word[j + 1] === "=") {
            set(f, word.slice(j + 2), `-${letter}`);
            break;
          }
          set(f, true, `-${letter}`);
          continue;
        }
        let rest = word.slice(j + 1);
        if (rest.startsWith("=")) rest = rest.slice(1);
        if (rest !== "" || word.endsWith("=")) set(f, rest, `-${letter}`);
        else {
          if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: '${letter}' in -${letter}`, command);
          set(f, argv[++i]!, `-${letter}`);
        }
        break;
      }
      continue;
    }
    args.push(word);
    if (spec.stopAtFirstArg) {
      args.push(...argv.slice(i + 1));
      break;
    }
  }
  if (flags.get("help")) return { args, flags };
  if (spec.minArgs !== undefined && args.length < spec.minArgs) {
    throw new UsageError(
      `"berth ${command}" requires ${spec.minArgs === spec.maxArgs ? "exactly" : "at least"} ${spec.minArgs} argument${spec.minArgs === 1 ? "" : "s"}.`,
      command,
      true,
    );
  }
  if (spec.maxArgs !== undefined && args.length > spec.maxArgs) {
    throw new UsageError(
      spec.maxArgs === 0 ? `"berth ${command}" accepts no arguments.` : `"berth ${command}" requires at most ${spec.maxArgs} argument${spec.maxArgs === 1 ? "" : "s"}.`,
      command,
      true,
    );
  }
  return { args, flags };
}

/** Typed access to parsed flags, with the spec's defaults. */
export class Flags {
  private readonly parsed: Parsed["flags"];
  private readonly spec: CommandSpec;
  private readonly command: string;
  constructor(spec: CommandSpec, command: string, parsed: Parsed["flags"]) {
    this.spec = spec;
    this.command = command;
    this.parsed = parsed;
  }
  has(name: string): boolean {
    return this.parsed.has(name);
  }
  bool(name: string): boolean {
    return this.parsed.get(name) === true;
  }
  string(name: string): string | undefined {
    const v = this.parsed.get(name);
    if (typeof v === "string") return v;
    return this.spec.flags.find((f) => f.name === name)?.default;
  }
  list(name: string): string[] {
    const v = this.parsed.get(name);
    return Array.isArray(v) ? v : [];
  }
  /** An integer flag; a malformed one is a usage error naming it. */
  int(name: string): number | undefined {
    const text = this.string(name);
    if (text === undefined) return undefined;
    if (!/^[-+]?\d+$/.test(text.trim())) {
      throw new UsageError(`invalid argument "${text}" for "--${name}" flag: strconv.ParseInt: parsing "${text}": invalid syntax`, this.command);
    }
    return Number(text);
  }
}

/** The help text of a command, laid out like docker's. */
export function helpText(spec: CommandSpec): string {
  let out = `\nUsage:  berth ${spec.usage}\n\n${spec.description}\n`;
  if (spec.flags.length > 0) {
    out += "\nOptions:\n";
    const rows = spec.flags.map((f) => {
      const names = `${f.short ? `-${f.short}, ` : "    "}--${f.name}${f.kind === "bool" ? "" : ` ${f.value ?? (f.kind === "list" ? "list" : "string")}`}`;
      return [names, f.description + (f.default !== undefined && f.default !== "" ? ` (default ${JSON.stringify(f.default)})` : "")] as const;
    });
    const width = Math.max(...rows.map(([n]) => n.length));
    for (const [names, text] of rows) out += `  ${names.padEnd(width)}   ${text}\n`;
  }
  return out;
}
