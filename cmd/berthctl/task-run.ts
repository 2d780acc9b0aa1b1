// Running a container's init or an exec the way ctr does: FIFOs made and opened before
// the shim starts (so no output is lost), Wait asked before Start (so a fast exit is not
// missed), then either detach or relay stdio, terminal size and signals until the
// process exits; the exit status is returned for the caller to exit with.
import type { Client } from "nice-grpc";
import { TasksDefinition } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import { constants } from "node:os";
import { attachIo, createFifos, followTerminalSize, forwardSignals, rawTerminal, removeFifos, type Attachment, type TaskIo } from "./task-io.ts";
import { CommandError } from "./output.ts";
import type { Session } from "./session.ts";

export const processSpecTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process";

export interface RunOptions {
  tty: boolean;
  detach: boolean;
  /** No FIFOs: the process's stdio is /dev/null. */
  nullIo?: boolean;
  fifoDir: string;
}

export type StartWhat = { kind: "init"; rootfs: Mount[] } | { kind: "exec"; execId: string; spec: object };

const noIo: TaskIo = { stdin: "", stdout: "", stderr: "", terminal: false };

/** The process's stdio for a new task or exec: FIFOs unless `nullIo`. */
function ioFor(id: string, options: RunOptions): TaskIo {
  return options.nullIo ? { ...noIo, terminal: options.tty } : createFifos(options.fifoDir, id, options.tty);
}

/**
 * Creates and starts the process; returns its exit status, or undefined when detached.
 * The FIFOs of a process that was waited for are removed; a detached one keeps them for
 * `tasks attach` (deleting the task removes them).
 */
export async function startProcess(s: Session, containerId: string, what: StartWhat, options: RunOptions): Promise<number | undefined> {
  const tasks = s.client(TasksDefinition);
  const execId = what.kind === "exec" ? what.execId : "";
  const io = ioFor(what.kind === "exec" ? `${containerId}-${execId}` : containerId, options);
  let attachment: Attachment | undefined;
  let restoreTerminal = () => {};
  // A detached process keeps its FIFOs for `tasks attach`, once it has started.
  let keepFifos = false;
  try {
    if (!options.detach && !options.nullIo) {
      // stdinEnded runs only after shimOpened(), so the process exists by then.
      attachment = attachIo(io, { stdin: { stdinEnded: () => void tasks.closeIO({ containerId, execId, stdin: true }, s.call()).catch(() => undefined) } });
      if (options.tty) restoreTerminal = rawTerminal();
    }
    if (what.kind === "init") {
      await tasks.create({ containerId, rootfs: what.rootfs, stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, terminal: io.terminal }, s.call());
    } else {
      const spec = { typeUrl: processSpecTypeUrl, value: Buffer.from(JSON.stringify(what.spec)) };
      await tasks.exec({ containerId, execId, spec, stdin: io.stdin, stdout: io.stdout, stderr: io.stderr, terminal: io.terminal }, s.call());
    }
    if (options.detach) {
      await tasks.start({ containerId, execId }, s.call());
      keepFifos = true;
      return undefined;
    }
    const exited = tasks.wait({ containerId, execId }, s.call());
    // A failed start must not leave the wait rejecting unobserved.
    exited.catch(() => undefined);
    await tasks.start({ containerId, execId }, s.call());
    // Only now does the shim hold its ends: an exec's shim opens them as it starts.
    attachment?.shimOpened();
    const stopFollowing = options.tty ? followTerminalSize((width, height) => void resize(tasks, s, containerId, execId, width, height)) : forwardSignals((signal) => void tasks.kill({ containerId, execId, signal: constants.signals[signal] }, s.call()).catch(() => undefined));
    try {
      const { exitStatus } = await exited;
      await attachment?.outputDone;
      return exitStatus;
    } finally {
      stopFollowing();
    }
  } finally {
    restoreTerminal();
    attachment?.close();
    if (!keepFifos) removeFifos(io, what.kind === "exec" ? `${containerId}-${execId}` : containerId);
  }
}

async function resize(tasks: Client<typeof TasksDefinition>, s: Session, containerId: string, execId: string, width: number, height: number): Promise<void> {
  await tasks.resizePty({ containerId, execId, width, height }, s.call()).catch(() => undefined);
}

/** Relays the stdio of a running process (`tasks attach`) until it exits; returns its exit status. */
export async function attachProcess(s: Session, containerId: string): Promise<number> {
  const tasks = s.client(TasksDefinition);
  const { process } = await tasks.get({ containerId, execId: "" }, s.call());
  const io: TaskIo = { stdin: process!.stdin, stdout: process!.stdout, stderr: process!.stderr, terminal: process!.terminal };
  if (io.stdout.startsWith("file://")) throw new CommandError(`task ${containerId} writes its output to ${io.stdout}: there is no stdio to attach to`);
  const exited = tasks.wait({ containerId, execId: "" }, s.call());
  const attachment = attachIo(io, { stdin: { stdinEnded: () => void tasks.closeIO({ containerId, execId: "", stdin: true }, s.call()).catch(() => undefined) } });
  attachment.shimOpened();
  const restoreTerminal = io.terminal ? rawTerminal() : () => {};
  const stopFollowing = io.terminal ? followTerminalSize((width, height) => void resize(tasks, s, containerId, "", width, height)) : forwardSignals((signal) => void tasks.kill({ containerId, execId: "", signal: constants.signals[signal] }, s.call()).catch(() => undefined));
  try {
    const { exitStatus } = await exited;
    await attachment.outputDone;
    return exitStatus;
  } finally {
    stopFollowing();
    restoreTerminal();
    attachment.close();
  }
}
