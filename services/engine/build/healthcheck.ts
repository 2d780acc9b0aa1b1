// HEALTHCHECK: its options and forms into the image config's Healthcheck as Docker's
// classic builder writes it (durations in nanoseconds, zero values left out), and the
// history text it records (Go's %q of the struct, which `docker history` shows).
import { badRequest } from "../http.ts";
import { parseGoDuration } from "../../../core/go-duration.ts";

export interface Healthcheck {
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  Retries?: number;
}

/** `whole.fraction` of value/scale with the fraction's trailing zeros dropped, as Go prints it. */
function scaled(value: number, scale: number): string {
  const whole = Math.floor(value / scale);
  const fraction = value % scale;
  if (fraction === 0) return String(whole);
  const digits = String(scale).length - 1;
  return `${whole}.${String(fraction).padStart(digits, "0").replace(/0+$/, "")}`;
}

/** Go's Duration.String: "0s", "500ms", "1.5s", "5m0s", "1h0m0s". */
export function formatGoDuration(ns: number): string {
  if (ns === 0) return "0s";
  const sign = ns < 0 ? "-" : "";
  let rest = Math.abs(ns);
  if (rest < 1e3) return `${sign}${rest}ns`;
  if (rest < 1e6) return `${sign}${scaled(rest, 1e3)}µs`;
  if (rest < 1e9) return `${sign}${scaled(rest, 1e6)}ms`;
  const hours = Math.floor(rest / 3.6e12);
  rest -= hours * 3.6e12;
  const minutes = Math.floor(rest / 6e10);
  rest -= minutes * 6e10;
  return `${sign}${hours ? `${hours}h` : ""}${hours || minutes ? `${minutes}m` : ""}${scaled(rest, 1e9)}s`;
}

const durationOptions = { interval: "Interval", timeout: "Timeout", "start-period": "StartPeriod" } as const;

/** Docker's smallest accepted non-zero interval. */
const minimumDuration = 1e6;

/**
 * The Healthcheck a `HEALTHCHECK [--interval=… --timeout=… --start-period=… --retries=…]
 * CMD …|NONE` sets. `json` is the command's exec form when it was written as a JSON array.
 */
export function parseHealthcheck(args: string, flags: ReadonlyMap<string, string>): Healthcheck {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(args.trim());
  const type = m?.[1]!.toUpperCase() ?? "";
  const rest = m?.[2] ?? "";
  for (const name of flags.keys()) {
    if (name !== "retries" && !(name in durationOptions)) throw badRequest(`Unknown flag: ${name} (HEALTHCHECK takes --interval, --timeout, --start-period and --retries)`);
  }
  if (type === "NONE") {
    if (rest !== "" || flags.size > 0) throw badRequest("HEALTHCHECK NONE takes no arguments");
    return { Test: ["NONE"] };
  }
  if (type !== "CMD") throw badRequest(`Unknown type ${JSON.stringify(type)} in HEALTHCHECK (try CMD)`);
  if (rest === "") throw badRequest("Missing command after HEALTHCHECK CMD");
  let test: string[] = ["CMD-SHELL", rest];
  if (rest.startsWith("[")) {
    try {
      const parsed: unknown = JSON.parse(rest);
      if (Array.isArray(parsed) && parsed.every((v) => typeof v === "string")) test = ["CMD", ...(parsed as string[])];
    } catch {
      // not JSON: the shell form, as Docker falls back
    }
  }
  const health: Healthcheck = { Test: test };
  for (const [flag, field] of Object.entries(durationOptions)) {
    const text = flags.get(flag);
    if (text === undefined || text === "") continue;
    const ns = parseGoDuration(text);
    if (ns === undefined) throw badRequest(`HEALTHCHECK --${flag}: time: invalid duration ${JSON.stringify(text)}`);
    if (ns === 0) continue;
    if (ns < minimumDuration) throw badRequest(`HEALTHCHECK --${flag}: ${JSON.stringify(text)} cannot be less than 1ms`);
    health[field] = ns;
  }
  const retries = flags.get("retries");
  if (retries !== undefined && retries !== "") {
    if (!/^[+-]?\d+$/.test(retries)) throw badRequest(`HEALTHCHECK --retries: invalid number ${JSON.stringify(retries)}`);
    const n = Number(retries);
    if (n < 1) throw badRequest(`--retries must be at least 1 (not ${n})`);
    health.Retries = n;
  }
  return health;
}

/** Go's %q of an int: the rune it codes for, quoted. */
function goQuotedRune(n: number): string {
  const named: Record<number, string> = { 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\" };
  if (named[n]) return `'${named[n]}'`;
  if (n < 32 || n === 127) return `'\\x${n.toString(16).padStart(2, "0")}'`;
  return `'${String.fromCodePoint(n)}'`;
}

/** What the classic builder records in the history: `HEALTHCHECK &{["CMD-SHELL" "x"] "30s" "0s" "0s" '\x03'}`. */
export function healthcheckHistory(health: Healthcheck): string {
  const test = `[${health.Test.map((t) => JSON.stringify(t)).join(" ")}]`;
  const durations = [health.Interval, health.Timeout, health.StartPeriod].map((d) => `"${formatGoDuration(d ?? 0)}"`).join(" ");
  return `HEALTHCHECK &{${test} ${durations} ${goQuotedRune(health.Retries ?? 0)}}`;
}
