// berth's command line: docker's verbs and global flags, dispatched to the command
// modules. All of them are one bundle (dist/berth-cli.js): measured, resolving and
// loading a module file costs ~1 ms each at start-up, more than compiling code that the
// compile cache already holds, so one file beats a chunk per command.
import { Flags, helpText, parseArgs, type CommandSpec } from "./args.ts";
import { CliError, UsageError } from "./errors.ts";
import { err, Context, out, type CommandModule, type GlobalOptions } from "./command.ts";
import { checkFormat } from "./output.ts";
import { commands as psCommands } from "./commands/ps.ts";
import * as versionInfo from "./version-info.ts";
import { commands as systemCommands } from "./commands/system.ts";
import { commands as imagesCommands } from "./commands/images.ts";
import { commands as transferCommands } from "./commands/transfer.ts";
import { commands as lifecycleCommands } from "./commands/lifecycle.ts";
import { commands as runCommands } from "./commands/run.ts";
import { commands as logsCommands } from "./commands/logs.ts";
import { commands as inspectCommands } from "./commands/inspect.ts";
import { commands as archiveCommands } from "./commands/archive.ts";
import { commands as contextCommands } from "./commands/context.ts";
import { commands as networkCommands } from "./commands/networks.ts";
import { commands as volumeCommands } from "./commands/volumes.ts";
import { commands as buildCommands } from "./commands/build.ts";

/** Every command's implementation, by name. */
const implementations: CommandModule = {
  ...systemCommands,
  ...psCommands,
  ...imagesCommands,
  ...transferCommands,
  ...lifecycleCommands,
  ...runCommands,
  ...logsCommands,
  ...inspectCommands,
  ...archiveCommands,
  ...contextCommands,
  ...networkCommands,
  ...volumeCommands,
  ...buildCommands,
};

/** The one-line description `berth --help` shows for each command, in its order. */
const commands: Record<string, string> = {
  run: "Create and run a new container from an image",
  exec: "Execute a command in a running container",
  ps: "List containers",
  images: "List images",
  pull: "Download an image from a registry",
  push: "Upload an image to a registry",
  login: "Log in to a registry",
  logout: "Log out from a registry",
  version: "Show the berth version information",
  info: "Display system-wide information",
  events: "Get real time events from the server",
  "system df": "Show docker disk usage",
  "builder prune": "Remove build cache",
  attach: "Attach local standard input, output, and error streams to a running container",
  create: "Create a new container",
  start: "Start one or more stopped containers",
  stop: "Stop one or more running containers",
  kill: "Kill one or more running containers",
  restart: "Restart one or more containers",
  rm: "Remove one or more containers",
  pause: "Pause all processes within one or more containers",
  unpause: "Unpause all processes within one or more containers",
  rename: "Rename a container",
  wait: "Block until one or more containers stop, then print their exit codes",
  top: "Display the running processes of a container",
  stats: "Display a live stream of container(s) resource usage statistics",
  "container prune": "Remove all stopped containers",
  logs: "Fetch the logs of a container",
  inspect: "Return low-level information on Docker objects",
  tag: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
  rmi: "Remove one or more images",
  save: "Save one or more images to a tar archive (streamed to STDOUT by default)",
  load: "Load an image from a tar archive or STDIN",
  history: "Show the history of an image",
  build: "Build an image from a Dockerfile",
  "image prune": "Remove unused images",
  cp: "Copy files/folders between a container and the local filesystem",
  commit: "Create a new image from a container's changes",
  export: "Export a container's filesystem as a tar archive",
  "context create": "Create a context",
  "context ls": "List contexts",
  "context use": "Set the current context",
  "context rm": "Remove one or more contexts",
  "context inspect": "Show a context's host",
  "context show": "Print the name of the current context",
  "network create": "Create a network",
  "network ls": "List networks",
  "network inspect": "Display detailed information on one or more networks",
  "network connect": "Connect a container to a network",
  "network disconnect": "Disconnect a container from a network",
  "network rm": "Remove one or more networks",
  "network prune": "Remove all unused networks",
  "volume create": "Create a volume",
  "volume ls": "List volumes",
  "volume inspect": "Display detailed information on one or more volumes",
  "volume rm": "Remove one or more volumes",
  "volume prune": "Remove unused local volumes",
};

/** docker's management-command spellings (`container ls`, `image rm`…) for the same commands. */
const aliases: Record<string, string> = {
  "container ls": "ps",
  "container list": "ps",
  "container ps": "ps",
  "image ls": "images",
  "image list": "images",
  "image rm": "rmi",
  "image remove": "rmi",
  "image pull": "pull",
  "image push": "push",
  "image tag": "tag",
  "image inspect": "inspect --type=image",
  "image save": "save",
  "image load": "load",
  "image history": "history",
  "container inspect": "inspect --type=container",
  "system info": "info",
  "system events": "events",
  "context list": "context ls",
  "context remove": "context rm",
  "network list": "network ls",
  "network remove": "network rm",
  "volume list": "volume ls",
  "volume remove": "volume rm",
};
const groups = new Set(["container", "image", "system", "context", "network", "volume", "builder"]);
for (const name of Object.keys(commands)) {
  if (!name.includes(" ") && !["images", "pull", "push", "login", "logout", "version", "info", "events", "tag", "rmi", "history", "save", "load"].includes(name)) {
    aliases[`container ${name}`] ??= name;
  }
}
for (const name of ["history", "save", "load", "tag"]) aliases[`image ${name}`] ??= name;

const globalSpec: CommandSpec = {
  usage: "[OPTIONS] COMMAND",
  description: "A docker-style client for Berth's Engine API",
  flags: [
    { name: "host", short: "H", kind: "list", description: "Daemon socket to connect to (unix:///path or tcp://host:port; also $BERTH_HOST)" },
    { name: "context", short: "c", kind: "string", description: "Name of the context to use (berth context ls)" },
    { name: "config", kind: "string", description: "Location of client config files (for login)", default: "~/.docker" },
    { name: "debug", short: "D", kind: "bool", description: "Enable debug mode" },
    { name: "log-level", short: "l", kind: "string", description: "Set the logging level" },
    { name: "version", short: "v", kind: "bool", description: "Print version information and quit" },
  ],
  stopAtFirstArg: true,
};

function topHelp(): string {
  let text = helpText(globalSpec);
  text += "\nCommands:\n";
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  for (const [name, description] of Object.entries(commands)) text += `  ${name.padEnd(width)}  ${description}\n`;
  text += "\nRun 'berth COMMAND --help' for more information on a command.\n";
  return text;
}

function report(e: unknown): number {
  if (e instanceof UsageError) {
    if (e.showUsage) err(`berth: ${e.message}\n\nSee 'berth ${e.command} --help'.\n`);
    else err(`${e.message}\nSee 'berth ${e.command} --help'.\n`);
    return e.exitCode;
  }
  if (e instanceof CliError) {
    if (e.message) err(`${e.message}\n`);
    return e.exitCode;
  }
  err(`berth: ${(e as Error)?.stack ?? String(e)}\n`);
  return 1;
}

/** Resolves the command words (`ps`, `container ls`, `image rm`) to a known command and its remaining words. */
function resolveCommand(words: string[]): { name: string; rest: string[] } {
  const first = words[0]!;
  if (groups.has(first)) {
    const sub = words[1];
    if (sub === undefined || sub.startsWith("-")) throw new CliError(`berth ${first}: a subcommand is required (berth --help lists them)`);
    const key = `${first} ${sub}`;
    const alias = aliases[key];
    if (alias) {
      const [name, ...extra] = alias.split(" ");
      if (commands[alias]) return { name: alias, rest: words.slice(2) };
      return { name: name!, rest: [...extra, ...words.slice(2)] };
    }
    if (commands[key]) return { name: key, rest: words.slice(2) };
    throw new CliError(`berth: unknown command: berth ${key}\n\nRun 'berth ${first} --help' for more information`);
  }
  if (commands[first]) return { name: first, rest: words.slice(1) };
  throw new CliError(`berth: unknown command: berth ${first}\n\nRun 'berth --help' for more information`);
}

export async function main(argv: string[]): Promise<void> {
  let code: number;
  try {
    code = await dispatch(argv);
  } catch (e) {
    code = report(e);
  }
  process.exit(code);
}

async function dispatch(argv: string[]): Promise<number> {
  const global = parseArgs(globalSpec, "", argv);
  const gflags = new Flags(globalSpec, "", global.flags);
  if (gflags.bool("version")) {
    const { clientVersion } = versionInfo;
    out(`Berth version ${clientVersion}\n`);
    return 0;
  }
  if (gflags.bool("help") || global.args.length === 0) {
    out(topHelp());
    return 0;
  }
  const hosts = gflags.list("host");
  const globals: GlobalOptions = {
    host: hosts.length > 0 ? hosts[hosts.length - 1] : undefined,
    context: gflags.string("context"),
    config: global.flags.has("config") ? gflags.string("config") : undefined,
    debug: gflags.bool("debug"),
  };
  const { name, rest } = resolveCommand(global.args);
  const command = implementations[name];
  if (!command) throw new CliError(`berth ${name}: not available in this build`);
  const parsed = parseArgs(command.spec, name, rest);
  const flags = new Flags(command.spec, name, parsed.flags);
  if (flags.bool("help")) {
    out(helpText(command.spec));
    return 0;
  }
  const format = command.spec.flags.some((f) => f.name === "format") ? flags.string("format") : undefined;
  if (format) checkFormat(format);
  return (await command.run(new Context(name, parsed.args, flags, globals))) ?? 0;
}
