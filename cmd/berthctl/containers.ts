// berthctl containers (c, container): create, ls, info, rm — as ctr containers.
import type { Command } from "commander";
import { ContainersDefinition, type Container } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import { SnapshotsDefinition } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import { TasksDefinition } from "../../core/gen/containerd/services/tasks/v1/tasks.ts";
import { Status } from "../../core/gen/containerd/types/task/task.ts";
import type { Timestamp } from "../../core/gen/google/protobuf/timestamp.ts";
import { isNotFound } from "../../core/grpc-status.ts";
import { parseJsonSpec, withContainerFlags, type ContainerFlags } from "./container-flags.ts";
import { CommandError, logError, messageOf, writeOut } from "./output.ts";
import type { Session } from "./session.ts";
import { Table } from "./tabwriter.ts";
import { deleteTask, statusName, wideTable } from "./tasks.ts";

/** Go's RFC 3339 with nanoseconds, trailing zeros dropped (encoding/json's time format). */
function goRfc3339(ts: Timestamp | undefined): string {
  const seconds = Number(ts?.seconds ?? 0n);
  const nanos = ts?.nanos ?? 0;
  const fraction = nanos ? `.${String(nanos).padStart(9, "0").replace(/0+$/, "")}` : "";
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}${fraction}Z`;
}

const anyJson = (any: { typeUrl: string; value: Uint8Array } | undefined) =>
  any ? { type_url: any.typeUrl, ...(any.value.length ? { value: Buffer.from(any.value).toString("base64") } : {}) } : null;

/** `containers info` as ctr prints it: the record's fields in containerd's order, the spec decoded. */
function containerInfo(container: Container): string {
  const nonEmpty = <T extends object>(map: T) => (Object.keys(map).length ? map : null);
  const info = {
    ID: container.id,
    Labels: nonEmpty(container.labels),
    Image: container.image,
    Runtime: { Name: container.runtime?.name ?? "", Options: anyJson(container.runtime?.options) },
    SnapshotKey: container.snapshotKey,
    Snapshotter: container.snapshotter,
    CreatedAt: goRfc3339(container.createdAt),
    UpdatedAt: goRfc3339(container.updatedAt),
    Extensions: nonEmpty(Object.fromEntries(Object.entries(container.extensions).map(([k, v]) => [k, anyJson(v)]))),
    ...(container.spec?.value.length ? { Spec: parseJsonSpec(container) } : {}),
  };
  return `${JSON.stringify(info, null, 4)}\n`;
}

/**
 * Removes a container whose task is stopped or absent, and its snapshot unless `keepSnapshot`
 * (ctr's WithSnapshotCleanup).
 */
export async function deleteContainer(s: Session, id: string, keepSnapshot = false): Promise<void> {
  const { container } = await s.client(ContainersDefinition).get({ id }, s.call());
  try {
    const { process } = await s.client(TasksDefinition).get({ containerId: id, execId: "" }, s.call());
    if (process!.status !== Status.STOPPED && process!.status !== Status.CREATED) {
      throw new CommandError(`cannot delete a non stopped container: task ${id} is ${statusName(process!.status).toLowerCase()}`);
    }
    await deleteTask(s, id);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  // The snapshot first, as containerd's client does: a container deleted without one
  // leaves nothing to collect, so no garbage collection is asked for.
  if (!keepSnapshot && container!.snapshotKey) {
    await s
      .client(SnapshotsDefinition)
      .remove({ snapshotter: container!.snapshotter, key: container!.snapshotKey }, s.call())
      .catch((err: unknown) => {
        if (!isNotFound(err)) throw err;
      });
  }
  await s.client(ContainersDefinition).delete({ id }, s.call());
}

export function registerContainers(program: Command, session: (cmd: Command) => Session): void {
  const containers = program.command("containers").aliases(["c", "container"]).description("manage containers").enablePositionalOptions();

  withContainerFlags(containers.command("create").description("create container").passThroughOptions())
    .argument("[image]")
    .argument("[id]")
    .argument("[command...]")
    .action(async (image: string | undefined, id: string | undefined, args: string[], opts: ContainerFlags, cmd: Command) => {
      if (!image) throw new CommandError("image ref must be provided");
      if (!id) throw new CommandError("container id must be provided");
      const { createContainer } = await import("./container-new.ts");
      await createContainer(session(cmd), image, id, args, opts);
    });

  containers
    .command("list")
    .alias("ls")
    .description("list containers")
    .option("-q, --quiet", "print only the container id")
    .argument("[filters...]")
    .action(async (filters: string[], opts: { quiet?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const { containers: list } = await s.client(ContainersDefinition).list({ filters }, s.call());
      if (opts.quiet) {
        for (const c of list) await writeOut(`${c.id}\n`);
        return;
      }
      const table = new Table(" ", wideTable).line("CONTAINER\tIMAGE\tRUNTIME\t");
      for (const c of list) table.line(`${c.id}\t${c.image || "-"}\t${c.runtime?.name ?? ""}\t`);
      await writeOut(table.toString());
    });

  containers
    .command("info")
    .description("get info about a container")
    .argument("[id]")
    .action(async (id: string | undefined, _opts: unknown, cmd: Command) => {
      if (!id) throw new CommandError("container id must be provided");
      const s = session(cmd);
      const { container } = await s.client(ContainersDefinition).get({ id }, s.call());
      await writeOut(containerInfo(container!));
    });

  containers
    .command("delete")
    .aliases(["del", "remove", "rm"])
    .description("delete one or more existing containers")
    .option("--keep-snapshot", "do not clean up snapshot with container")
    .argument("[ids...]")
    .action(async (ids: string[], opts: { keepSnapshot?: boolean }, cmd: Command) => {
      if (ids.length === 0) throw new CommandError("must specify at least one container to delete");
      const s = session(cmd);
      let firstError: CommandError | undefined;
      for (const id of ids) {
        try {
          await deleteContainer(s, id, Boolean(opts.keepSnapshot));
        } catch (err) {
          firstError ??= new CommandError(messageOf(err));
          logError(`failed to delete container ${JSON.stringify(id)}`, err);
        }
      }
      if (firstError) throw firstError;
    });
}
