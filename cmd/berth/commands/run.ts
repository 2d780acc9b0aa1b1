// berth run, create, start, attach and exec: the hijacked-stream commands. `run` follows
// the docker CLI's order (create; on "No such image" pull and create again; attach; wait
// with its headers received; start; resize), so output written the moment the process
// starts is already attached, and the exit status is the wait's StatusCode.
import type { Context, CommandModule } from "../command.ts";
import { err, out } from "../command.ts";
import type { EngineClient } from "../client.ts";
import { readAll } from "../client.ts";
import { buildCreate, createFlags } from "../container-config.ts";
import { CliError, DaemonError, isNotFound } from "../errors.ts";
import { followResize, runSession, type SessionEnd } from "../streams.ts";
import { pullImage } from "./transfer.ts";

const path = (name: string, action = "") => `/containers/${encodeURIComponent(name)}${action}`;

/** docker's exit status for a failed start: 127 not found, 126 not executable, else 125. */
function startFailureCode(message: string): number {
  if (/executable file not found|no such file or directory/.test(message)) return 127;
  if (/permission denied|is a directory/.test(message)) return 126;
  return 125;
}

/** `run`'s failures carry "berth: " and the help hint, and exit 125 unless start chose 126/127. */
function runError(e: unknown, code = 125): CliError {
  if (!(e instanceof CliError)) return e as CliError;
  return new CliError(`berth: ${e.message}\n\nRun 'berth run --help' for more information`, code);
}

async function createContainer(ctx: Context, detached: boolean): Promise<string> {
  const request = buildCreate(ctx.flags, ctx.args, detached);
  const image = String(request.body.Image);
  const policy = ctx.flags.string("pull") ?? "missing";
  if (!["always", "missing", "never"].includes(policy)) throw new CliError(`invalid pull option: '${policy}': must be one of "always", "missing" or "never"`, 125);
  const quiet = ctx.flags.bool("quiet");
  // Pull progress goes to stderr, keeping stdout for the container's output (and -d's id).
  if (policy === "always") await pullImage(ctx.client, image, ctx.globals.config, process.stderr, quiet);
  const create = () =>
    ctx.client.json<{ Id: string; Warnings?: string[] | null }>("POST", "/containers/create", { query: { name: request.name, platform: request.platform }, body: request.body });
  let reply: { Id: string; Warnings?: string[] | null };
  try {
    reply = await create();
  } catch (e) {
    if (!(isNotFound(e) && (e as DaemonError).daemonMessage.startsWith("No such image")) || policy === "never") throw e;
    err(`Unable to find image '${image}' locally\n`);
    await pullImage(ctx.client, image, ctx.globals.config, process.stderr, quiet);
    reply = await create();
  }
  for (const w of reply.Warnings ?? []) err(`WARNING: ${w}\n`);
  return reply.Id;
}

interface Waiter {
  result: Promise<number>;
}

/** Opens the wait now (its headers come back at once) and reads its result later. */
async function openWait(client: EngineClient, id: string, condition: string | undefined): Promise<Waiter> {
  const res = await client.request("POST", path(id, "/wait"), { query: { condition } });
  const result = readAll(res.body).then((body) => {
    const reply = JSON.parse(body.toString("utf8") || "{}") as { StatusCode?: number; Error?: { Message?: string } | null };
    if (reply.Error?.Message) throw new CliError(`berth: ${reply.Error.Message}`, 125);
    return reply.StatusCode ?? 0;
  });
  result.catch(() => undefined);
  return { result };
}

/** Forwards SIGINT/SIGTERM to the container (docker's sig-proxy) while a non-TTY session runs. */
function proxySignals(client: EngineClient, id: string): () => void {
  const forward = (signal: NodeJS.Signals) => () => void client.call("POST", path(id, "/kill"), { query: { signal } }).catch(() => undefined);
  const handlers = (["SIGINT", "SIGTERM"] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  return () => {
    for (const [s, h] of handlers) process.off(s, h);
  };
}

interface Attached {
  done: Promise<SessionEnd>;
}

async function attachStreams(client: EngineClient, id: string, options: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean; logs?: boolean }): Promise<Attached> {
  const { socket, head } = await client.hijack(path(id, "/attach"), {
    query: { stream: true, stdin: options.stdin, stdout: options.stdout, stderr: options.stderr, logs: options.logs },
  });
  return runSession({ socket, head, tty: options.tty, stdin: options.stdin });
}

function checkTerminal(tty: boolean, stdin: boolean): void {
  if (tty && stdin && !process.stdin.isTTY) throw new CliError("the input device is not a TTY", 1);
}

const execFlags = createFlags.filter((f) => ["detach", "detach-keys", "env", "env-file", "interactive", "privileged", "tty", "user", "workdir"].includes(f.name));

export const commands: CommandModule = {
  create: {
    spec: { usage: "create [OPTIONS] IMAGE [COMMAND] [ARG...]", description: "Create a new container", minArgs: 1, stopAtFirstArg: true, flags: createFlags },
    async run(ctx) {
      out(`${await createContainer(ctx, true)}\n`);
    },
  },
  run: {
    spec: { usage: "run [OPTIONS] IMAGE [COMMAND] [ARG...]", description: "Create and run a new container from an image", minArgs: 1, stopAtFirstArg: true, flags: createFlags },
    async run(ctx) {
      const f = ctx.flags;
      const detached = f.bool("detach");
      const tty = f.bool("tty");
      const interactive = f.bool("interactive");
      checkTerminal(tty, interactive && !detached);
      let id: string;
      try {
        id = await createContainer(ctx, detached);
      } catch (e) {
        throw runError(e);
      }
      const client = ctx.client;
      if (detached) {
        try {
          await client.call("POST", path(id, "/start"));
        } catch (e) {
          throw runError(e, e instanceof CliError ? startFailureCode(e.message) : 125);
        }
        out(`${id}\n`);
        return 0;
      }
      const attach = f.list("attach").map((s) => s.toLowerCase());
      const session = await attachStreams(client, id, {
        stdin: interactive && (attach.length === 0 || attach.includes("stdin")),
        stdout: attach.length === 0 || attach.includes("stdout"),
        stderr: attach.length === 0 || attach.includes("stderr"),
        tty,
      });
      const waiter = await openWait(client, id, f.bool("rm") ? "removed" : "next-exit");
      try {
        await client.call("POST", path(id, "/start"));
      } catch (e) {
        const code = e instanceof CliError ? startFailureCode(e.message) : 125;
        // With --rm the engine removes the container; its wait ends too (not awaited forever).
        if (f.bool("rm")) await Promise.race([waiter.result.catch(() => 0), new Promise((r) => setTimeout(r, 5000).unref())]);
        throw runError(e, code);
      }
      const stopResize = tty ? followResize((size) => client.call("POST", path(id, "/resize"), { query: size })) : () => undefined;
      const stopProxy = !tty && f.string("sig-proxy") !== "false" ? proxySignals(client, id) : () => undefined;
      const end = await session.done;
      stopResize();
      stopProxy();
      if (end === "detached") return 0;
      return await waiter.result;
    },
  },
  start: {
    spec: {
      usage: "start [OPTIONS] CONTAINER [CONTAINER...]",
      description: "Start one or more stopped containers",
      minArgs: 1,
      flags: [
        { name: "attach", short: "a", kind: "bool", description: "Attach STDOUT/STDERR and forward signals" },
        { name: "interactive", short: "i", kind: "bool", description: "Attach container's STDIN" },
        { name: "detach-keys", kind: "string", description: "Override the key sequence for detaching a container" },
      ],
    },
    async run(ctx) {
      const client = ctx.client;
      if (ctx.flags.bool("attach") || ctx.flags.bool("interactive")) {
        if (ctx.args.length > 1) throw new CliError("you cannot start and attach multiple containers at once");
        const name = ctx.args[0]!;
        const info = await client.json<{ Id: string; Config?: { Tty?: boolean; OpenStdin?: boolean }; HostConfig?: { AutoRemove?: boolean } }>("GET", path(name, "/json"));
        const tty = Boolean(info.Config?.Tty);
        const stdin = ctx.flags.bool("interactive") && Boolean(info.Config?.OpenStdin);
        checkTerminal(tty, stdin);
        const session = await attachStreams(client, info.Id, { stdin, stdout: true, stderr: true, tty });
        const waiter = await openWait(client, info.Id, info.HostConfig?.AutoRemove ? "removed" : "next-exit");
        await client.call("POST", path(info.Id, "/start"));
        const stopResize = tty ? followResize((size) => client.call("POST", path(info.Id, "/resize"), { query: size })) : () => undefined;
        const end = await session.done;
        stopResize();
        return end === "detached" ? 0 : await waiter.result;
      }
      let failed = false;
      for (const name of ctx.args) {
        try {
          await client.call("POST", path(name, "/start"));
          out(`${name}\n`);
        } catch (e) {
          if (!(e instanceof CliError)) throw e;
          err(`${e.message}\n`);
          failed = true;
        }
      }
      if (failed) throw new CliError("Error: failed to start containers: " + ctx.args.join(", "));
    },
  },
  attach: {
    spec: {
      usage: "attach [OPTIONS] CONTAINER",
      description: "Attach local standard input, output, and error streams to a running container",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "no-stdin", kind: "bool", description: "Do not attach STDIN" },
        { name: "sig-proxy", kind: "string", value: "bool", description: "Proxy all received signals to the process", default: "true" },
        { name: "detach-keys", kind: "string", description: "Override the key sequence for detaching a container" },
      ],
    },
    async run(ctx) {
      const client = ctx.client;
      const name = ctx.args[0]!;
      const waiter = await openWait(client, name, undefined);
      const info = await client.json<{ Id: string; State?: { Running?: boolean; Paused?: boolean; Restarting?: boolean }; Config?: { Tty?: boolean; OpenStdin?: boolean } }>("GET", path(name, "/json"));
      if (!info.State?.Running) throw new CliError("You cannot attach to a stopped container, start it first");
      if (info.State.Paused) throw new CliError("You cannot attach to a paused container, unpause it first");
      if (info.State.Restarting) throw new CliError("You cannot attach to a restarting container, wait until it is running");
      const tty = Boolean(info.Config?.Tty);
      const stdin = !ctx.flags.bool("no-stdin") && Boolean(info.Config?.OpenStdin);
      checkTerminal(tty, stdin);
      const session = await attachStreams(client, info.Id, { stdin, stdout: true, stderr: true, tty });
      const stopResize = tty
        ? followResize(async (size) => {
            // One size off first, so the program redraws even when the size did not change.
            await client.call("POST", path(info.Id, "/resize"), { query: { h: size.h + 1, w: size.w + 1 } });
            await client.call("POST", path(info.Id, "/resize"), { query: size });
          })
        : () => undefined;
      const stopProxy = !tty && ctx.flags.string("sig-proxy") !== "false" ? proxySignals(client, info.Id) : () => undefined;
      const end = await session.done;
      stopResize();
      stopProxy();
      if (end === "detached") throw new CliError("read escape sequence");
      return await waiter.result;
    },
  },
  exec: {
    spec: { usage: "exec [OPTIONS] CONTAINER COMMAND [ARG...]", description: "Execute a command in a running container", minArgs: 2, stopAtFirstArg: true, flags: execFlags },
    async run(ctx) {
      const f = ctx.flags;
      const client = ctx.client;
      const [name, ...cmd] = ctx.args;
      const tty = f.bool("tty");
      const detach = f.bool("detach");
      const interactive = f.bool("interactive") && !detach;
      checkTerminal(tty, interactive);
      // The container first, so an unknown name reads "No such container".
      const info = await client.json<{ Id: string }>("GET", path(name!, "/json"));
      const env = buildCreate(f, ["x"], true).body.Env as string[];
      const created = await client.json<{ Id: string }>("POST", path(info.Id, "/exec"), {
        body: {
          User: f.string("user") ?? "",
          Privileged: f.bool("privileged"),
          Tty: tty,
          AttachStdin: interactive,
          AttachStderr: !detach,
          AttachStdout: !detach,
          Detach: detach,
          DetachKeys: f.string("detach-keys") ?? "",
          Env: env,
          WorkingDir: f.string("workdir") ?? "",
          Cmd: cmd,
        },
      });
      if (detach) {
        await client.call("POST", `/exec/${created.Id}/start`, { body: { Detach: true, Tty: tty } });
        return 0;
      }
      const { socket, head } = await client.hijack(`/exec/${created.Id}/start`, { body: { Detach: false, Tty: tty } });
      const session = runSession({ socket, head, tty, stdin: interactive });
      const stopResize = tty ? followResize((size) => client.call("POST", `/exec/${created.Id}/resize`, { query: size })) : () => undefined;
      const end = await session.done;
      stopResize();
      if (end === "detached") return 0;
      // The exit code is recorded before the stream ends; a short poll covers a slow engine.
      for (let i = 0; i < 100; i++) {
        const state = await client.json<{ Running?: boolean; ExitCode?: number | null }>("GET", `/exec/${created.Id}/json`);
        if (state.ExitCode !== null && state.ExitCode !== undefined && !state.Running) return state.ExitCode;
        await new Promise((r) => setTimeout(r, 50));
      }
      return 0;
    },
  },
};
