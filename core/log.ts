// Structured logs on stderr; berthd's children inherit its stderr.
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(name: string): Logger {
  return pino({ name, level: process.env.BERTH_LOG_LEVEL ?? "info", base: { pid: process.pid, name } }, pino.destination(2));
}
