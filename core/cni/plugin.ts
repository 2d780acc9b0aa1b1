// One CNI plugin call: the CNI protocol is an exec of the plugin binary with the command
// and the sandbox in environment variables, the network config as JSON on stdin, and the
// result (or an error object {code, msg, details}) as JSON on stdout.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BerthError, invalidArgument } from "../errors.ts";
import { ChildTimeoutError, describeExit, runCollected } from "../../native/spawn.ts";

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";

/** The CNI version Berth speaks to plugins (Debian's 1.1.1 plugins support it). */
export const cniVersion = "1.0.0";

/** Where the plugin binaries are: $BERTH_CNI_PATH (colon-separated), else Debian's and the upstream default. */
export function cniPluginDirs(): string[] {
  const fromEnv = process.env.BERTH_CNI_PATH;
  if (fromEnv) return fromEnv.split(":").filter(Boolean);
  return ["/usr/lib/cni", "/opt/cni/bin"];
}

export interface CniSandbox {
  containerId: string;
  /** The network namespace's path (a bind-mounted nsfs file). */
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs (K8S_POD_NAME=…); rarely needed. */
  args?: Record<string, string>;
}

/** A plugin's failure, with the code and message it reported. */
export class CniPluginError extends BerthError {
  readonly plugin: string;
  readonly code: number;
  constructor(plugin: string, command: CniCommand, code: number, msg: string, details?: string) {
    super("unknown", `CNI ${plugin} ${command} failed (code ${code}): ${msg}${details ? `: ${details}` : ""}`);
    this.plugin = plugin;
    this.code = code;
  }
}

/** How long one plugin call may take (a plugin waiting on the xtables lock is the slow case). */
const pluginTimeoutMs = 60_000;

function findPlugin(type: string, dirs: readonly string[]): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(type)) throw invalidArgument(`invalid CNI plugin type ${JSON.stringify(type)}`);
  for (const dir of dirs) {
    const path = join(dir, type);
    if (existsSync(path)) return path;
  }
  throw invalidArgument(`CNI plugin ${JSON.stringify(type)} not found in ${dirs.join(":")}`);
}

/**
 * Runs `config.type` with `command`. Resolves to the parsed stdout (a result for ADD, the
 * version info for VERSION; DEL and CHECK print nothing on success).
 */
export async function execPlugin(command: CniCommand, config: { type: string; [key: string]: unknown }, sandbox: CniSandbox | undefined, dirs = cniPluginDirs()): Promise<unknown> {
  const binary = findPlugin(config.type, dirs);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: command,
    CNI_PATH: dirs.join(":"),
  };
  if (sandbox) {
    env.CNI_CONTAINERID = sandbox.containerId;
    env.CNI_NETNS = sandbox.netns;
    env.CNI_IFNAME = sandbox.ifname;
    if (sandbox.args) env.CNI_ARGS = Object.entries(sandbox.args).map(([k, v]) => `${k}=${v}`).join(";");
  }
  // posix_spawn, not child_process: a fork of the engine (~150 MB while building) blocked
  // its event loop 4–5 ms per plugin, and a RUN's or container's network takes several.
  let run;
  try {
    run = await runCollected(binary, [], { env, input: JSON.stringify(config), timeoutMs: pluginTimeoutMs });
  } catch (err) {
    if (err instanceof ChildTimeoutError) throw new CniPluginError(config.type, command, 999, `killed by SIGKILL after ${pluginTimeoutMs} ms`);
    throw err;
  }
  const stdout = run.stdout.trim();
  const stderr = run.stderr.trim();
  if (run.exit.code === 0) {
    if (!stdout) return undefined;
    try {
      return JSON.parse(stdout);
    } catch {
      throw new CniPluginError(config.type, command, 999, `unparsable output: ${stdout.slice(0, 200)}`);
    }
  }
  let parsed: { code?: number; msg?: string; details?: string } = {};
  try {
    parsed = JSON.parse(stdout);
  } catch {
    // not the protocol's error object: fall back to what it printed
  }
  const msg = parsed.msg ?? (run.exit.code === null ? `killed by ${describeExit(run.exit).replace(/^signal /, "")}` : stderr || stdout || `exit status ${run.exit.code}`);
  throw new CniPluginError(config.type, command, parsed.code ?? 999, msg, parsed.details);
}
