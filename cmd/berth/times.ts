// Time flags (--since, --until) the way the docker CLI sends them: Unix seconds (with a
// nanosecond fraction), from a Unix time, a Go duration before now ("10m", "1h30m"),
// or an RFC 3339 date/time.
import { parseDuration } from "../berthctl/units.ts";
import { CliError } from "./errors.ts";

export function parseTimeFlag(value: string | undefined, flag: string, now: number): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (/^\d+(\.\d{1,9})?$/.test(value)) return value;
  const duration = parseDuration(value);
  if (duration !== undefined) {
    const ms = Math.round(now - duration);
    return `${Math.floor(ms / 1000)}.${String((ms % 1000) * 1_000_000).padStart(9, "0")}`;
  }
  const date = /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN;
  if (!Number.isNaN(date)) return String(Math.floor(date / 1000));
  throw new CliError(`invalid value for "--${flag}": "${value}" is not a Unix timestamp, a duration (10m) or an RFC 3339 time`, 125);
}
