// The human-readable sizes and ages ctr prints (docker/go-units and ctr's
// progress.Bytes), reproduced so the columns read the same.
import { parseGoDuration } from "../../core/go-duration.ts";

function scale(size: number, base: number, units: readonly string[]): [number, string] {
  let i = 0;
  while (size >= base && i < units.length - 1) {
    size /= base;
    i++;
  }
  return [size, units[i]!];
}

const decimalUnits = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"] as const;
const binaryUnits = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"] as const;

/** units.HumanSize: Go's "%.4g%s" with base 1000 ("11B", "1.3kB", "3.3MB"). */
export function humanSize(bytes: number | bigint): string {
  const [value, unit] = scale(Number(bytes), 1000, decimalUnits);
  // toPrecision(4) then Number() drops trailing zeros the way %g does; below 1000
  // the exponent never reaches the precision, so %g never switches to e-notation.
  return `${Number(value.toPrecision(4))}${unit}`;
}

/** ctr's progress.Bytes: "%02.1f %s" with base 1024 ("415.0 B", "10.6 KiB"). */
export function binarySize(bytes: number | bigint): string {
  const [value, unit] = scale(Number(bytes), 1024, binaryUnits);
  return `${value.toFixed(1).padStart(2, "0")} ${unit}`;
}

/** units.HumanDuration ("Less than a second", "3 minutes", "About an hour", …). */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return "Less than a second";
  if (seconds === 1) return "1 second";
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return "About a minute";
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return "About an hour";
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/** Go's time.ParseDuration ("0s", "1.5s", "2m30s"), in milliseconds; undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  const ns = parseGoDuration(text.trim());
  return ns === undefined ? undefined : ns / 1e6;
}
