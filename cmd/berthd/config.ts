// berthd's settings: flags win over the config file, which wins over the defaults.
// The config file is JSON: {"root": "...", "state": "...", "address": "...", "redisUrl": "...",
// "registry": {"defaultRegistry", "mirrors", "insecure", "certsDir"}} (docs/registry.md).
import { readFileSync, existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { defaultRoot, defaultState, gatewaySocketPath } from "../../core/config.ts";
import { messageWithoutKind, BerthError } from "../../core/errors.ts";
import { parseRegistrySettings, type RegistrySettings } from "../../core/registry/settings.ts";

export interface DaemonConfig {
  root: string;
  state: string;
  address: string;
  redisUrl?: string;
  /** For pulls and pushes (the jobs process gets them as BERTH_REGISTRY_CONFIG). */
  registry: RegistrySettings;
}

export const defaultConfigFile = "/etc/berth/berthd.json";

const usage = `Usage: berthd [--root DIR] [--state DIR] [--address SOCKET] [--config FILE]

Runs the Berth daemon: a private redis-server (unless BERTH_REDIS_URL is set) and
every Berth service as its own process, behind one gRPC socket.

  --root DIR        persistent state (default ${defaultRoot})
  --state DIR       runtime state: sockets, pids (default ${defaultState})
  --address SOCKET  the gRPC socket (default <state>/berth.sock)
  --config FILE     JSON settings file (default ${defaultConfigFile} when it exists)
`;

export function loadDaemonConfig(argv: string[]): DaemonConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      root: { type: "string" },
      state: { type: "string" },
      address: { type: "string", short: "a" },
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const file = values.config ?? (existsSync(defaultConfigFile) ? defaultConfigFile : undefined);
  let fromFile: Partial<DaemonConfig> = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, "utf8")) as Partial<DaemonConfig>;
    } catch (err) {
      throw new Error(`cannot read config file ${file}: ${(err as Error).message}`);
    }
  }
  let registry: RegistrySettings;
  try {
    registry = parseRegistrySettings((fromFile as { registry?: unknown }).registry);
  } catch (err) {
    throw new Error(`config file ${file}: ${err instanceof BerthError ? messageWithoutKind(err) : (err as Error).message}`);
  }
  const root = values.root ?? fromFile.root ?? defaultRoot;
  const state = values.state ?? fromFile.state ?? defaultState;
  return {
    root,
    state,
    address: values.address ?? fromFile.address ?? gatewaySocketPath(state),
    redisUrl: process.env.BERTH_REDIS_URL || fromFile.redisUrl,
    registry,
  };
}
