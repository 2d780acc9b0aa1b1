// berthctl pull / push: the daemon does the work (berth.services.transfer.v1.Transfer,
// durable jobs in the jobs process); this shows its progress and the result. When the
// jobs process restarts mid-transfer (the gateway says its service closed the call),
// the same request is sent again: it attaches to the transfer still under way.
import type { Command } from "commander";
import { Option } from "commander";
import { Status } from "nice-grpc-common";
import { TransferDefinition, type PullProgress, type PushProgress, type RegistryOptions } from "../../core/gen/berth/services/transfer/v1/transfer.ts";
import { errorMessage, grpcCode } from "../../core/grpc-status.ts";
import { CommandError, writeOut } from "./output.ts";
import type { Session } from "./session.ts";
import { checkTable, ProgressView } from "./transfer-progress.ts";

interface RegistryFlags {
  plainHttp?: boolean;
  skipVerify?: boolean;
  user?: string;
}

/**
 * --user, else what `berthctl login` (or docker login) stored for the registry the
 * reference names. A short name (busybox) gets none: the daemon may send short names
 * to a default registry of its own, which must not see Docker Hub's credentials.
 */
async function registryOptions(flags: RegistryFlags, ref: string): Promise<RegistryOptions> {
  let credentials;
  if (flags.user !== undefined) {
    const colon = flags.user.indexOf(":");
    if (colon <= 0) throw new CommandError(`--user ${JSON.stringify(flags.user)}: expected user:password`);
    credentials = { username: flags.user.slice(0, colon), password: flags.user.slice(colon + 1) };
  } else {
    // Loaded here: every other command starts without the registry library.
    const { getCredentials } = await import("../../core/registry/credentials.ts");
    const { namesRegistry, parseRegistryReference } = await import("../../core/registry/reference.ts");
    if (!namesRegistry(ref)) return { plainHttp: Boolean(flags.plainHttp), insecure: Boolean(flags.skipVerify), credentials: undefined };
    const { registry } = parseRegistryReference(ref);
    const stored = await getCredentials(registry);
    if (stored?.identityToken) throw new CommandError(`the stored credentials for ${registry} are an identity token, which berthctl cannot send: use --user`);
    if (stored) credentials = { username: stored.username, password: stored.password };
  }
  return { plainHttp: Boolean(flags.plainHttp), insecure: Boolean(flags.skipVerify), credentials };
}

/** The gateway's words for "the process serving this went away mid-call". */
function serviceRestarted(err: unknown): boolean {
  return grpcCode(err) === Status.UNAVAILABLE && /^service for berth\.services\.transfer\.v1\.Transfer (closed the call|is unavailable)/.test(errorMessage(err));
}

const maxReattachMs = 120_000;

/** Runs the call, again after a restart of the jobs process, and returns its last message. */
async function follow<T extends PullProgress | PushProgress>(open: () => AsyncIterable<T>, view: ProgressView): Promise<T> {
  const started = Date.now();
  let delay = 250;
  for (;;) {
    let last: T | undefined;
    try {
      for await (const progress of open()) {
        last = progress;
        view.update(progress.blobs);
      }
      if (!last?.image) throw new CommandError("the transfer ended without a result");
      return last;
    } catch (err) {
      if (!serviceRestarted(err) || Date.now() - started > maxReattachMs) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
    }
  }
}

const registryFlags = (cmd: Command) =>
  cmd
    .option("--plain-http", "allow connections using plain HTTP")
    .option("-k, --skip-verify", "skip SSL certificate validation")
    .option("-u, --user <user:password>", "registry user and password");

/** The command at the top level and, as in ctr, under `images`. */
function both(program: Command, name: string, define: (cmd: Command) => void): void {
  define(program.command(name));
  const images = program.commands.find((c) => c.name() === "images");
  if (images) define(images.command(name));
}

export function registerPull(program: Command, session: (cmd: Command) => Session): void {
  both(program, "pull", (cmd) => pullCommand(cmd, session));
}

export function registerPush(program: Command, session: (cmd: Command) => Session): void {
  both(program, "push", (cmd) => pushCommand(cmd, session));
}

function pullCommand(command: Command, session: (cmd: Command) => Session): void {
  registryFlags(command)
    .description("pull an image from a remote (the daemon fetches and unpacks it)")
    .option("--platform <platform>", "pull content from a specific platform")
    .addOption(new Option("--snapshotter <name>", "snapshotter name. Empty value stands for the default value.").env("CONTAINERD_SNAPSHOTTER").default(""))
    .option("--skip-unpack", "do not unpack the image into snapshots")
    .argument("[ref]")
    .action(async (ref: string | undefined, flags: RegistryFlags & { platform?: string; snapshotter: string; skipUnpack?: boolean }, cmd: Command) => {
      if (!ref) throw new CommandError("please provide an image reference to pull");
      const s = session(cmd);
      const request = { ref, platform: flags.platform ?? "", registry: await registryOptions(flags, ref), unpack: !flags.skipUnpack, snapshotter: flags.snapshotter };
      const client = s.client(TransferDefinition);
      const view = new ProgressView("Pull complete");
      const last = await follow(() => client.pull(request, s.call()), view);
      await writeOut(checkTable(last.image!, true));
    });
}

function pushCommand(command: Command, session: (cmd: Command) => Session): void {
  registryFlags(command)
    .description("push an image to a remote (the daemon uploads it)")
    .option("--platform <platform>", "push content from a specific platform")
    .argument("[remote]", "where to push")
    .argument("[local]", "the local image (default: the remote reference)")
    .action(async (remote: string | undefined, local: string | undefined, flags: RegistryFlags & { platform?: string }, cmd: Command) => {
      if (!remote) throw new CommandError("please provide a remote image reference to push");
      const s = session(cmd);
      const request = { source: local ?? remote, ref: remote, platform: flags.platform ?? "", registry: await registryOptions(flags, remote) };
      const client = s.client(TransferDefinition);
      const last = await follow(() => client.push(request, s.call()), new ProgressView("Pushed"));
      await writeOut(checkTable(last.image!, false));
    });
}
