// Which engine a command talks to: -H/--host, else --context, else $BERTH_HOST, else
// $BERTH_CONTEXT or the current context of ~/.berth/contexts.json, else the local
// daemon's socket. Contexts are named hosts, so one shell can drive several daemons.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writePrivateFile } from "../../core/private-files.ts";
import { CliError } from "./errors.ts";

export const defaultHost = "unix:///run/berth/docker.sock";

export type Endpoint = { socketPath: string } | { host: string; port: number };

export interface ContextEntry {
  host: string;
  description?: string;
}

export interface ContextFile {
  current?: string;
  contexts: Record<string, ContextEntry>;
}

/** Parses a host URL; unix:///path and tcp://host:port (plain TCP, for a trusted loopback). */
export function parseHost(text: string): Endpoint {
  const fail = (why: string) => new CliError(`invalid host "${text}": ${why}`);
  if (text.startsWith("unix://")) {
    const path = text.slice("unix://".length);
    if (!path.startsWith("/")) throw fail("a unix socket path must be absolute (unix:///path/to/docker.sock)");
    return { socketPath: path };
  }
  if (text.startsWith("tcp://")) {
    const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(text);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw fail("expected tcp://HOST:PORT");
    return { host: m[1]!.replace(/^\[|\]$/g, ""), port: Number(m[2]) };
  }
  throw fail("expected unix:///path or tcp://host:port");
}

export const contextFilePath = (): string => join(process.env.HOME || homedir(), ".berth", "contexts.json");

export function readContexts(): ContextFile {
  const file = contextFilePath();
  if (!existsSync(file)) return { contexts: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new CliError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const value = parsed as Partial<ContextFile> | null;
  if (!value || typeof value !== "object" || typeof value.contexts !== "object" || value.contexts === null) {
    throw new CliError(`${file} has no "contexts" object`);
  }
  return { current: value.current, contexts: value.contexts };
}

export function writeContexts(file: ContextFile): void {
  const path = contextFilePath();
  mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 });
  writePrivateFile(path, `${JSON.stringify(file, null, 2)}\n`);
}

/** The host a context names; "default" is the local daemon and always exists. */
export function contextHost(name: string, file: ContextFile = readContexts()): string {
  if (name === "default") return defaultHost;
  const entry = file.contexts[name];
  if (!entry) throw new CliError(`context "${name}" does not exist (berth context ls lists them)`);
  return entry.host;
}

export interface HostChoice {
  url: string;
  endpoint: Endpoint;
  context: string;
}

export function chooseHost(flagHost: string | undefined, flagContext: string | undefined, env: NodeJS.ProcessEnv): HostChoice {
  if (flagHost !== undefined && flagContext !== undefined) throw new CliError("conflicting options: give either --host or --context, not both");
  let url: string;
  let context = "default";
  if (flagHost !== undefined) url = flagHost;
  else if (flagContext !== undefined) {
    context = flagContext;
    url = contextHost(flagContext);
  } else if (env.BERTH_HOST) url = env.BERTH_HOST;
  else {
    // Reading the file only when no host was given keeps the common path free of it.
    const named = env.BERTH_CONTEXT || (existsSync(contextFilePath()) ? readContexts().current : undefined);
    context = named || "default";
    url = contextHost(context);
  }
  return { url, endpoint: parseHost(url), context };
}
