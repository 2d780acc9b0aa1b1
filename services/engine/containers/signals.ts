// Signals as clients name them: "KILL", "SIGKILL", "sigkill", "9".
import { constants } from "node:os";
import { badRequest } from "../http.ts";

const byName = constants.signals as Record<string, number>;

/** The signal number; an unknown name or an out-of-range number is a 400. */
export function parseSignal(text: string): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    const n = Number(trimmed);
    if (n < 1 || n > 64) throw badRequest(`Invalid signal: ${text}`);
    return n;
  }
  const upper = trimmed.toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  const rt = /^SIGRTMIN(?:\+(\d+))?$/.exec(name);
  if (rt) return 34 + Number(rt[1] ?? 0);
  const n = byName[name];
  if (n === undefined) throw badRequest(`Invalid signal: ${text}`);
  return n;
}

export const SIGKILL = byName.SIGKILL!;
export const SIGTERM = byName.SIGTERM!;
export const SIGWINCH = byName.SIGWINCH!;
