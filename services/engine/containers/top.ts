// GET /containers/{id}/top: the container's processes (the tasks service's ListPids) as
// `ps -ef` would show them on the host, from /proc: the table Docker's CLI prints.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { uptime } from "node:os";
import { promisify } from "node:util";
import { badRequest } from "../http.ts";

const clockTicks = 100; // USER_HZ on Linux

function hostUserNames(): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f.length > 2) names.set(Number(f[2]), f[0]!);
    }
  } catch {
    // numbers then
  }
  return names;
}

const pad2 = (n: number) => String(n).padStart(2, "0");

function ttyName(ttyNr: number): string {
  if (ttyNr === 0) return "?";
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  return major === 136 ? `pts/${minor}` : major === 4 ? `tty${minor}` : "?";
}

/** One `ps -ef` row of a pid, or undefined if it is gone. */
function row(pid: number, users: Map<number, string>, bootMs: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm may hold spaces and parentheses: the fields start after the last ')'.
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ppid = fields[1]!;
    const ttyNr = Number(fields[4]);
    const cpuTicks = Number(fields[11]) + Number(fields[12]);
    const startTicks = Number(fields[19]);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    const startedMs = bootMs + (startTicks / clockTicks) * 1000;
    const elapsed = Math.max(1, (Date.now() - startedMs) / 1000);
    const cpuSeconds = Math.floor(cpuTicks / clockTicks);
    const started = new Date(startedMs);
    return [
      users.get(uid) ?? String(uid),
      String(pid),
      ppid,
      String(Math.floor(((cpuTicks / clockTicks) * 100) / elapsed)),
      `${pad2(started.getHours())}:${pad2(started.getMinutes())}`,
      ttyName(ttyNr),
      `${pad2(Math.floor(cpuSeconds / 3600))}:${pad2(Math.floor(cpuSeconds / 60) % 60)}:${pad2(cpuSeconds % 60)}`,
      cmdline || `[${comm}]`,
    ];
  } catch {
    return undefined;
  }
}

export function processTable(pids: number[]): { Titles: string[]; Processes: string[][] } {
  const users = hostUserNames();
  const bootMs = Date.now() - uptime() * 1000;
  const processes = pids
    .sort((a, b) => a - b)
    .map((pid) => row(pid, users, bootMs))
    .filter((r): r is string[] => r !== undefined);
  return { Titles: ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], Processes: processes };
}

/**
 * With `ps_args` (docker top <c> aux): the host's ps run with them, its rows narrowed to
 * the container's pids, as Docker's daemon does.
 */
export async function psTable(pids: number[], psArgs: string): Promise<{ Titles: string[]; Processes: string[][] }> {
  const args = psArgs.trim().split(/\s+/).filter(Boolean);
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)("ps", args, { maxBuffer: 16 * 1024 * 1024 }));
  } catch (err) {
    throw badRequest(`Error running ps: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
  }
  const lines = stdout.split("\n").filter((l) => l.trim());
  const titles = lines[0]?.trim().split(/\s+/) ?? [];
  const pidColumn = titles.indexOf("PID");
  if (pidColumn < 0) throw badRequest(`Couldn't find PID field in ps output`);
  const wanted = new Set(pids.map(String));
  const processes: string[][] = [];
  for (const line of lines.slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (!wanted.has(fields[pidColumn]!)) continue;
    // The last title takes the rest of the line (a command with spaces).
    processes.push([...fields.slice(0, titles.length - 1), fields.slice(titles.length - 1).join(" ")]);
  }
  return { Titles: titles, Processes: processes };
}
