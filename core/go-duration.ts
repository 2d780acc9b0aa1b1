// Durations written as Go's time.ParseDuration reads them ("1.5s", "2m30s", "0"), the form
// Docker's and containerd's flags and Dockerfile options take.

const nsPerUnit: Record<string, number> = { ns: 1, us: 1e3, "µs": 1e3, "μs": 1e3, ms: 1e6, s: 1e9, m: 6e10, h: 3.6e12 };

/** The duration in nanoseconds; undefined when malformed (a bare number other than 0 is). */
export function parseGoDuration(text: string): number | undefined {
  let rest = text;
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    if (rest[0] === "-") sign = -1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") return undefined;
  let total = 0;
  const part = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest !== "") {
    const match = part.exec(rest);
    if (!match) return undefined;
    total += Number(match[1]) * nsPerUnit[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  total = Math.round(total);
  return Number.isSafeInteger(total) ? sign * total : undefined;
}
