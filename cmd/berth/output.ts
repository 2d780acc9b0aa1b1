// Lists the way docker prints them: a Go-template format per row, `table` formats
// aligned by docker's tab writer under a header row, the default being each command's
// table. Also the size and time wordings docker's columns use.
import { Table, type TableLayout } from "../berthctl/tabwriter.ts";
import { humanDuration } from "../berthctl/units.ts";
import { out } from "./command.ts";
import { expandFormat, Template } from "./template.ts";

/** The docker CLI's table writer (cli/command/formatter): minwidth 10, padding 3. */
const dockerLayout: TableLayout = { minWidth: 10, padding: 3 };

/** docker's formatter turns the two-character escapes \t and \n into the characters. */
const unescape = (format: string) => format.replace(/\\t/g, "\t").replace(/\\n/g, "\n");

/** Parses a --format the way printList will, so a malformed one fails before any request. */
export function checkFormat(format: string): void {
  const text = unescape(expandFormat(format));
  new Template(text.startsWith("table") ? text.slice("table".length) : text);
}

/**
 * Prints rows with `format` (a template, "table …", "json"), or the command's default
 * table when none is given. `headers` names each field's column.
 */
export function printList(rows: readonly object[], format: string | undefined, defaultTable: string, headers: object): void {
  let text = expandFormat(format === undefined || format === "" || format === "table" ? defaultTable : format);
  text = unescape(text);
  if (!text.startsWith("table")) {
    const template = new Template(text);
    let output = "";
    for (const row of rows) output += `${template.render(row)}\n`;
    out(output);
    return;
  }
  const template = new Template(text.slice("table".length).replace(/^\s/, ""));
  const table = new Table(" ", dockerLayout);
  table.line(template.render(headers));
  for (const row of rows) table.line(template.render(row));
  out(table.toString());
}

/** Go's %.Ng: N significant digits, trailing zeros dropped. */
const significant = (value: number, digits: number) => String(Number(value.toPrecision(digits)));

/** units.HumanSizeWithPrecision: base 1000, e.g. "4.26MB", "1.23kB", "0B". */
export function humanSize(bytes: number, precision = 4): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < units.length - 1) {
    size /= 1000;
    i++;
  }
  return `${significant(size, precision)}${units[i]}`;
}

/** units.BytesSize: base 1024, e.g. "1.5MiB". */
export function binarySize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
  let size = bytes;
  let i = 0;
  while (size >= 1024 && i < units.length - 1) {
    size /= 1024;
    i++;
  }
  return `${significant(size, 4)}${units[i]}`;
}

/** "2 minutes ago", as docker's CREATED columns read. */
export const ago = (unixSeconds: number, now = Date.now()): string => `${humanDuration(Math.max(0, now - unixSeconds * 1000))} ago`;

const pad2 = (n: number) => String(n).padStart(2, "0");

/** Go's time.Time String() in local time: "2026-11-30 07:48:01 +0000 UTC". */
export function goTime(date: Date): string {
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  const zone = Intl.DateTimeFormat("en-US", { timeZoneName: "short" }).formatToParts(date).find((p) => p.type === "timeZoneName")?.value ?? "";
  const name = offset === 0 && /^(GMT|UTC)$/.test(zone) ? "UTC" : zone;
  return (
    `${date.getFullYear()}-${pad2(date.getMonth() + 1)}-${pad2(date.getDate())} ${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())} ` +
    `${sign}${pad2(Math.trunc(abs / 60))}${pad2(abs % 60)} ${name}`
  );
}

/** Docker's truncated id: 12 hex digits, without a "sha256:" prefix. */
export const shortId = (id: string): string => id.replace(/^sha256:/, "").slice(0, 12);

/** formatter.Ellipsis: cut to `width` characters, the last one an ellipsis. */
export function ellipsis(text: string, width: number): string {
  const chars = [...text];
  if (chars.length <= width) return text;
  return `${chars.slice(0, width - 1).join("")}…`;
}
