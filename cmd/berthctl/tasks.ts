// berthctl tasks (t, task): start, ls, kill, exec, ps, pause, resume, delete, metrics,
// attach — as ctr tasks, with ctr's tables and exit codes.
import type { Command } from "commander";
import { ContainersDefinition } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { TasksDefinition } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import { Status } from "../../core/gen/containerd/types/task/task.ts";
import { CommandError, logError, logWarning, messageOf, writeOut } from "./output.ts";
import { metricsJson, metricsTable } from "./metrics-format.ts";
import type { Session } from "./session.ts";
import { parseSignal } from "./signals.ts";
import { Table } from "./tabwriter.ts";
import { defaultFifoDir, removeFifos } from "./task-io.ts";
import { attachProcess, startProcess } from "./task-run.ts";
import { parseJsonSpec } from "./container-flags.ts";

/** ctr's wide tables (tasks ls, containers ls): minwidth 4, padding 4. */
export const wideTable = { minWidth: 4, padding: 4 } as const;

export const statusName = (status: number) => Object.entries(Status).find(([, value]) => value === status)?.[0] ?? "UNKNOWN";

function need(value: string | undefined, what: string): string {
  if (!value) throw new CommandError(`${what} must be provided`);
  return value;
}

/** Exits with the process's status when it is not 0 (ctr's cli.NewExitError("", code)). */
export function exitWith(status: number | undefined): void {
  if (status) process.exitCode = status;
}

/** Deletes a task (and, when its stdio were our FIFOs, them); `tasks delete` warns of a non-zero exit, as ctr does. */
export async function deleteTask(s: Session, id: string, warnNonZero = false): Promise<void> {
  const tasks = s.client(TasksDefinition);
  const { process } = await tasks.get({ containerId: id, execId: "" }, s.call());
  const deleted = await tasks.delete({ containerId: id }, s.call());
  removeFifos(process!, id);
  if (warnNonZero && deleted.exitStatus !== 0) logWarning(`task ${id} exit with non-zero exit code ${deleted.exitStatus}`);
}

export function registerTasks(program: Command, session: (cmd: Command) => Session): void {
  const tasks = program.command("tasks").aliases(["t", "task"]).description("manage tasks").enablePositionalOptions();

  tasks
    .command("start")
    .description("start a container that has been created")
    .option("--null-io", "send all IO to /dev/null")
    .option("--fifo-dir <dir>", "directory used for storing IO FIFOs", defaultFifoDir)
    .option("-d, --detach", "detach from the task after it has started execution")
    .argument("[container]")
    .action(async (id: string | undefined, opts: { nullIo?: boolean; fifoDir: string; detach?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const { container } = await s.client(ContainersDefinition).get({ id: need(id, "container id") }, s.call());
      const spec = parseJsonSpec(container!) as { process?: { terminal?: boolean } };
      const { mounts } = await s.client(SnapshotsDefinition).mounts({ snapshotter: container!.snapshotter, key: container!.snapshotKey }, s.call());
      const tty = Boolean(spec.process?.terminal);
      const status = await startProcess(s, id!, { kind: "init", rootfs: mounts }, { tty, detach: Boolean(opts.detach), nullIo: Boolean(opts.nullIo), fifoDir: opts.fifoDir });
      if (status === undefined) return;
      await deleteTask(s, id!);
      exitWith(status);
    });

  tasks
    .command("list")
    .alias("ls")
    .description("list tasks")
    .option("-q, --quiet", "print only the task id")
    .action(async (opts: { quiet?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const { tasks: list } = await s.client(TasksDefinition).list({ filter: "" }, s.call());
      if (opts.quiet) {
        for (const t of list) await writeOut(`${t.id}\n`);
        return;
      }
      const table = new Table(" ", wideTable).line("TASK\tPID\tSTATUS\t");
      for (const t of list) table.line(`${t.id}\t${t.pid}\t${statusName(t.status)}`);
      await writeOut(table.toString());
    });

  tasks
    .command("kill")
    .description("signal a container (default: SIGTERM)")
    .option("-s, --signal <signal>", "signal to send to the container", "SIGTERM")
    .option("--exec-id <id>", "process ID to kill", "")
    .option("-a, --all", "send signal to all processes inside the container")
    .argument("[container]")
    .action(async (id: string | undefined, opts: { signal: string; execId: string; all?: boolean }, cmd: Command) => {
      const signal = parseSignal(opts.signal);
      if (opts.all && opts.execId) throw new CommandError("specify an exec-id or all; not both");
      const s = session(cmd);
      await s.client(TasksDefinition).kill({ containerId: need(id, "container id"), execId: opts.execId, signal, all: Boolean(opts.all) }, s.call());
    });

  tasks
    .command("exec")
    .description("execute additional processes in an existing container")
    .passThroughOptions()
    .option("--cwd <dir>", "working directory of the new process")
    .option("-t, --tty", "allocate a TTY for the container")
    .option("-d, --detach", "detach from the task after it has started execution")
    .option("--exec-id <id>", "exec specific id for the process")
    .option("--fifo-dir <dir>", "directory used for storing IO FIFOs", defaultFifoDir)
    .option("--user <user>", "user id or name (numeric uid[:gid])")
    .option("--env <K=V>", "additional environment variables", (v: string, p: string[]) => [...p, v], [])
    .argument("[container]")
    .argument("[command...]")
    .action(async (id: string | undefined, args: string[], opts: { cwd?: string; tty?: boolean; detach?: boolean; execId?: string; fifoDir: string; user?: string; env: string[] }, cmd: Command) => {
      need(id, "container id");
      const execId = need(opts.execId, "exec-id");
      if (args.length === 0) throw new CommandError("a command to run is required");
      const s = session(cmd);
      const { container } = await s.client(ContainersDefinition).get({ id: id! }, s.call());
      const spec = parseJsonSpec(container!) as { process?: Record<string, unknown> & { env?: string[]; user?: unknown } };
      const processSpec: Record<string, unknown> = { ...spec.process, args, terminal: Boolean(opts.tty) };
      if (opts.cwd) processSpec.cwd = opts.cwd;
      if (opts.env.length) processSpec.env = [...(spec.process?.env ?? []), ...opts.env];
      if (opts.user !== undefined) {
        const match = /^(\d+)(?::(\d+))?$/.exec(opts.user);
        if (!match) throw new CommandError(`invalid --user ${JSON.stringify(opts.user)}: exec takes a numeric uid[:gid]`);
        processSpec.user = { uid: Number(match[1]), gid: Number(match[2] ?? 0) };
      }
      const status = await startProcess(s, id!, { kind: "exec", execId, spec: processSpec }, { tty: Boolean(opts.tty), detach: Boolean(opts.detach), fifoDir: opts.fifoDir });
      if (status === undefined) return;
      await s.client(TasksDefinition).deleteProcess({ containerId: id!, execId }, s.call());
      exitWith(status);
    });

  tasks
    .command("ps")
    .description("list processes for container")
    .argument("[container]")
    .action(async (id: string | undefined, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const { processes } = await s.client(TasksDefinition).listPids({ containerId: need(id, "container id") }, s.call());
      const table = new Table(" ", { minWidth: 1, padding: 4 }).line("PID\tINFO");
      for (const p of processes) table.line(`${p.pid}\t-`);
      await writeOut(table.toString());
    });

  for (const [name, description] of [
    ["pause", "pause an existing container"],
    ["resume", "resume a paused container"],
  ] as const) {
    tasks
      .command(name)
      .description(description)
      .argument("[container]")
      .action(async (id: string | undefined, _opts: unknown, cmd: Command) => {
        const s = session(cmd);
        const request = { containerId: need(id, "container id") };
        if (name === "pause") await s.client(TasksDefinition).pause(request, s.call());
        else await s.client(TasksDefinition).resume(request, s.call());
      });
  }

  tasks
    .command("delete")
    .aliases(["del", "remove", "rm"])
    .description("delete one or more tasks")
    .option("-f, --force", "force delete task process")
    .option("--exec-id <id>", "process ID to kill", "")
    .argument("[containers...]")
    .action(async (ids: string[], opts: { force?: boolean; execId: string }, cmd: Command) => {
      if (ids.length === 0) throw new CommandError("container id must be provided");
      const s = session(cmd);
      const client = s.client(TasksDefinition);
      if (opts.execId) {
        if (ids.length > 1) throw new CommandError("specify an exec-id with one container only");
        const deleted = await client.deleteProcess({ containerId: ids[0]!, execId: opts.execId }, s.call());
        if (deleted.exitStatus !== 0) logWarning(`task ${ids[0]} exit with non-zero exit code ${deleted.exitStatus}`);
        return;
      }
      let firstError: CommandError | undefined;
      for (const id of ids) {
        try {
          if (opts.force) {
            // Force: kill what runs, wait for it, then delete.
            const { process } = await client.get({ containerId: id, execId: "" }, s.call());
            if (process!.status === Status.RUNNING || process!.status === Status.PAUSED) {
              const exited = client.wait({ containerId: id, execId: "" }, s.call());
              await client.kill({ containerId: id, execId: "", signal: 9, all: true }, s.call());
              await exited;
            }
          }
          await deleteTask(s, id, true);
        } catch (err) {
          firstError ??= new CommandError(messageOf(err));
          logError(`unable to delete ${id}`, err);
        }
      }
      if (firstError) throw firstError;
    });

  tasks
    .command("metrics")
    .alias("metric")
    .description("get a single data point of metrics for a task with the built-in Linux runtime")
    .option("--format <format>", '"table" or "json"', "table")
    .argument("[container]")
    .action(async (id: string | undefined, opts: { format: string }, cmd: Command) => {
      if (opts.format !== "table" && opts.format !== "json") throw new CommandError(`unknown format ${JSON.stringify(opts.format)}: "table" or "json"`);
      const s = session(cmd);
      const { metrics } = await s.client(TasksDefinition).metrics({ filters: [`id==${need(id, "container id")}`] }, s.call());
      if (metrics.length === 0) throw new CommandError("no metrics received");
      await writeOut(opts.format === "json" ? metricsJson(metrics[0]!) : metricsTable(metrics[0]!));
    });

  tasks
    .command("attach")
    .description("attach to the IO of a running container")
    .argument("[container]")
    .action(async (id: string | undefined, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      exitWith(await attachProcess(s, need(id, "container id")));
    });
}
