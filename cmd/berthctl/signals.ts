// Signal arguments as ctr takes them: "SIGKILL", "KILL" or "9".
import { constants } from "node:os";
import { CommandError } from "./output.ts";

const byName = constants.signals as Record<string, number>;

export function parseSignal(text: string): number {
  if (/^\d+$/.test(text)) {
    const number = Number(text);
    if (number < 1 || number > 64) throw new CommandError(`invalid signal ${text}: a signal number is 1 to 64`);
    return number;
  }
  const upper = text.toUpperCase();
  const number = byName[upper.startsWith("SIG") ? upper : `SIG${upper}`];
  if (number === undefined) throw new CommandError(`invalid signal ${JSON.stringify(text)}: not a signal name or number`);
  return number;
}
