// berthd's settings: flags win over the config file, which wins over the defaults.
// The config file is JSON: {"root": "...", "state": "...", "address": "...", "redisUrl": "...",
// "registry": {"defaultRegistry", "mirrors", "insecure", "certsDir"}} (docs/registry.md),
// "keepProcesses": true|false}.
import { readFileSync, existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { defaultRoot, defaultState, gatewaySocketPath } from "../../core/config.ts";
import { messageWithoutKind, BerthError } from "../../core/errors.ts";
import { parseRegistrySettings, type RegistrySettings } from "../../core/registry/settings.ts";

/** Where the Engine API listens besides <state>/docker.sock: TCP, with mutual TLS unless forced otherwise. */
export interface EngineTcpConfig {
  /** "tcp://HOST:PORT". */
  host: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  /** Serve plain TCP without TLS (anyone who reaches the port controls the host). */
  insecure?: boolean;
}

export interface DaemonConfig {
  root: string;
  state: string;
  address: string;
  redisUrl?: string;
  /** For pulls and pushes (the jobs process gets them as BERTH_REGISTRY_CONFIG). */
  registry: RegistrySettings;
  engineTcp?: EngineTcpConfig;
  /**
   * Start the processes that otherwise start on demand (content, images, snapshots, diff,
   * jobs) with berthd and keep them: no call waits for a start (a cold pull's largest
   * fixed cost), for their idle memory (docs/architecture.md).
   */
  keepProcesses: boolean;
}

export const defaultConfigFile = "/etc/berth/berthd.json";

const usage = `Usage: berthd [--root DIR] [--state DIR] [--address SOCKET] [--config FILE]

Runs the Berth daemon: a private redis-server (unless BERTH_REDIS_URL is set) and
every Berth service as its own process, behind one gRPC socket.

  --root DIR        persistent state (default ${defaultRoot})
  --state DIR       runtime state: sockets, pids (default ${defaultState})
  --address SOCKET  the gRPC socket (default <state>/berth.sock)
  --config FILE     JSON settings file (default ${defaultConfigFile} when it exists)
  --keep-processes  start every process with berthd and keep it, instead of starting
                    content, images, snapshots, diff and jobs when a call needs them
                    (faster first calls and pulls, ~116 MiB more memory while idle)

The Engine API (docker.sock in the state dir) can also listen on TCP, with mutual TLS:
  --engine-host tcp://HOST:PORT   e.g. tcp://0.0.0.0:2376
  --tlscacert FILE  CA that client certificates must be signed by
  --tlscert FILE    the server's certificate
  --tlskey FILE     the server's key
  --engine-insecure-tcp   serve that TCP port without TLS (refused otherwise: whoever
                    reaches it can run containers with any host path mounted, i.e. own the host)
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
      "engine-host": { type: "string" },
      tlscacert: { type: "string" },
      tlscert: { type: "string" },
      tlskey: { type: "string" },
      "engine-insecure-tcp": { type: "boolean" },
      "keep-processes": { type: "boolean" },
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
  const tcpFromFile = fromFile.engineTcp;
  const host = values["engine-host"] ?? tcpFromFile?.host;
  const engineTcp = host
    ? checkEngineTcp({
        host,
        tlscacert: values.tlscacert ?? tcpFromFile?.tlscacert,
        tlscert: values.tlscert ?? tcpFromFile?.tlscert,
        tlskey: values.tlskey ?? tcpFromFile?.tlskey,
        insecure: values["engine-insecure-tcp"] ?? tcpFromFile?.insecure ?? false,
      })
    : undefined;
  const keepFromFile = (fromFile as { keepProcesses?: unknown }).keepProcesses;
  if (keepFromFile !== undefined && typeof keepFromFile !== "boolean") throw new Error(`config file ${file}: keepProcesses must be true or false, not ${JSON.stringify(keepFromFile)}`);
  const root = values.root ?? fromFile.root ?? defaultRoot;
  const state = values.state ?? fromFile.state ?? defaultState;
  return {
    root,
    state,
    address: values.address ?? fromFile.address ?? gatewaySocketPath(state),
    redisUrl: process.env.BERTH_REDIS_URL || fromFile.redisUrl,
    registry,
    engineTcp,
    keepProcesses: values["keep-processes"] ?? keepFromFile ?? false,
  };
}

/** A TCP listener is refused unless it has all of TLS, or plain TCP is forced. */
function checkEngineTcp(tcp: EngineTcpConfig): EngineTcpConfig {
  if (!/^tcp:\/\/[^/]+:\d+$/.test(tcp.host)) throw new Error(`--engine-host ${tcp.host}: expected tcp://HOST:PORT`);
  const tls = [tcp.tlscacert, tcp.tlscert, tcp.tlskey];
  if (tls.every(Boolean) || tcp.insecure) return tcp;
  if (tls.some(Boolean)) throw new Error("--engine-host: mutual TLS needs all of --tlscacert, --tlscert and --tlskey");
  throw new Error(
    `refusing to serve the Engine API on ${tcp.host} without TLS: whoever reaches that port can start containers with any host directory mounted, ` +
      "which is root on this host. Give --tlscacert, --tlscert and --tlskey (clients then need a certificate signed by that CA), or --engine-insecure-tcp to force it",
  );
}
