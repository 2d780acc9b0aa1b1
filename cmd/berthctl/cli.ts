// berthctl's command line: a ctr-style client for berth's gateway socket. Same command
// names, flags and output layout as ctr 1.6, so either tool can be used on the same daemon.
import { Command, Option } from "commander";
import { registerContent } from "./content.ts";
import { registerImages } from "./images.ts";
import { registerImagesArchive } from "./images-archive.ts";
import { registerImagesCheck } from "./images-check.ts";
import { registerLogin } from "./login.ts";
import { registerNamespaces } from "./namespaces.ts";
import { registerPull, registerPush } from "./pull.ts";
import { registerSnapshots } from "./snapshots.ts";
import { CommandError, fail } from "./output.ts";
import { Session } from "./session.ts";
import { defaultAddress, defaultNamespace } from "./fast-path.ts";
import { parseDuration } from "./units.ts";
import { clientVersion, registerVersion } from "./version.ts";

const program = new Command()
  .name("berthctl")
  .description("berth CLI: a ctr-style debug and administrative client for berthd")
  .version(clientVersion, "-v, --version", "print the version")
  .addOption(new Option("-a, --address <path>", "address for berth's gRPC server").env("BERTH_ADDRESS").default(defaultAddress))
  .addOption(new Option("--timeout <duration>", "total timeout for berthctl commands").default("0s"))
  .addOption(new Option("-n, --namespace <name>", "namespace to use with commands").env("BERTH_NAMESPACE").default(defaultNamespace))
  .showHelpAfterError()
  // As ctr: global flags come before the command, and a container's command line after
  // its id is passed on whole (`run IMAGE ID sh -c …`).
  .enablePositionalOptions();

let session: Session | undefined;

/** The session for the running command, built once from the global flags. */
function sessionOf(cmd: Command): Session {
  if (!session) {
    const opts = cmd.optsWithGlobals<{ address: string; namespace: string; timeout: string }>();
    const timeout = parseDuration(opts.timeout);
    if (timeout === undefined) throw new CommandError(`invalid value ${JSON.stringify(opts.timeout)} for flag -timeout: parse error`);
    session = new Session({ address: opts.address, namespace: opts.namespace, timeout: Math.max(0, timeout) });
  }
  return session;
}

/** The command a command line names: the first word after the global flags (ctr's order). */
function firstCommandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("-")) return arg;
    if (["-a", "--address", "-n", "--namespace", "--timeout"].includes(arg)) i++;
  }
  return undefined;
}

/**
 * run, containers and tasks bring the Tasks API and the stdio relay with them (about as
 * much code as every other command together): loaded only when the command line names one
 * of them, or when help lists every command.
 */
async function registerContainerCommands(word: string | undefined): Promise<void> {
  const all = word === undefined || word === "help";
  if (all || ["containers", "container", "c"].includes(word)) (await import("./containers.ts")).registerContainers(program, sessionOf);
  if (all || ["tasks", "task", "t"].includes(word)) (await import("./tasks.ts")).registerTasks(program, sessionOf);
  if (all || word === "run") (await import("./run.ts")).registerRun(program, sessionOf);
}

registerVersion(program, sessionOf);
registerNamespaces(program, sessionOf);
registerContent(program, sessionOf);
registerImages(program, sessionOf);
registerImagesArchive(program, sessionOf);
registerImagesCheck(program, sessionOf);
registerSnapshots(program, sessionOf);
registerPull(program, sessionOf);
registerPush(program, sessionOf);
registerLogin(program);
await registerContainerCommands(firstCommandWord(process.argv.slice(2)));

try {
  await program.parseAsync(process.argv);
} catch (err) {
  fail(err, session?.address);
} finally {
  session?.close();
}
