// berthctl run: a container from an image and its task, as ctr run: attached (stdio
// relayed, exits with the task's status; the task is deleted after, the container too
// with --rm) or detached (-d: started and left running).
import type { Command } from "commander";
import { withContainerFlags, type ContainerFlags } from "./container-flags.ts";
import { deleteContainer } from "./containers.ts";
import { CommandError } from "./output.ts";
import type { Session } from "./session.ts";
import { defaultFifoDir } from "./task-io.ts";
import { startProcess } from "./task-run.ts";
import { deleteTask, exitWith } from "./tasks.ts";

interface RunFlags extends ContainerFlags {
  rm?: boolean;
  detach?: boolean;
  nullIo?: boolean;
  fifoDir: string;
}

export function registerRun(program: Command, session: (cmd: Command) => Session): void {
  withContainerFlags(program.command("run").description("run a container").passThroughOptions())
    .option("--rm", "remove the container after running, cannot be used with --detach")
    .option("-d, --detach", "detach from the task after it has started execution, cannot be used with --rm")
    .option("--null-io", "send all IO to /dev/null")
    .option("--fifo-dir <dir>", "directory used for storing IO FIFOs", defaultFifoDir)
    .argument("[image]")
    .argument("[id]")
    .argument("[command...]")
    .action(async (image: string | undefined, id: string | undefined, args: string[], opts: RunFlags, cmd: Command) => {
      if (!image) throw new CommandError("image ref must be provided");
      if (!id) throw new CommandError("container id must be provided");
      if (opts.rm && opts.detach) throw new CommandError("flags --detach and --rm cannot be specified together");
      const s = session(cmd);
      const { createContainer } = await import("./container-new.ts");
      const { rootfs } = await createContainer(s, image, id, args, opts);
      let status: number | undefined;
      try {
        status = await startProcess(s, id, { kind: "init", rootfs }, { tty: Boolean(opts.tty), detach: Boolean(opts.detach), nullIo: Boolean(opts.nullIo), fifoDir: opts.fifoDir });
        if (status !== undefined) await deleteTask(s, id);
      } finally {
        // A task that failed to start leaves a container; --rm removes it all the same.
        if (opts.rm) await deleteContainer(s, id);
      }
      exitWith(status);
    });
}
