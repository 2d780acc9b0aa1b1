// The runc commands the tasks service runs itself (the shim runs create and exec).
// runc keeps its state under a root per namespace, so the same container id can run in
// two namespaces.
import { BerthError, failedPrecondition, notFound } from "../../core/errors.ts";
import { describeExit, runCollected } from "../../native/spawn.ts";

export class Runc {
  readonly binary: string;
  readonly root: string;
  constructor(binary: string, root: string) {
    this.binary = binary;
    this.root = root;
  }

  private async run(args: string[]): Promise<string> {
    let result;
    try {
      // posix_spawn, not child_process: no copy of this process's page tables per runc run.
      result = await runCollected(this.binary, ["--root", this.root, ...args], { maxBuffer: 16 * 1024 * 1024 });
    } catch (err) {
      throw new BerthError("unknown", `runc ${args[0]} failed: ${(err as Error).message}`);
    }
    if (result.exit.code === 0) return result.stdout;
    const stderr = result.stderr.trim();
    const message = `runc ${args[0]} failed: ${stderr || `${this.binary} exited with ${describeExit(result.exit)}`}`;
    if (/does not exist|container not found/i.test(stderr)) throw notFound(message);
    if (/not running|not paused|cannot (start|pause|resume)|is (stopped|paused|created)/i.test(stderr)) throw failedPrecondition(message);
    throw new BerthError("unknown", message);
  }

  async start(id: string): Promise<void> {
    await this.run(["start", id]);
  }

  async kill(id: string, signal: number, all: boolean): Promise<void> {
    await this.run(["kill", ...(all ? ["--all"] : []), id, String(signal)]);
  }

  async delete(id: string): Promise<void> {
    await this.run(["delete", "--force", id]);
  }

  async pause(id: string): Promise<void> {
    await this.run(["pause", id]);
  }

  async resume(id: string): Promise<void> {
    await this.run(["resume", id]);
  }

  /** The pids of every process in the container. */
  async pids(id: string): Promise<number[]> {
    return (JSON.parse(await this.run(["ps", "--format", "json", id])) as number[] | null) ?? [];
  }

  async update(id: string, resourcesFile: string): Promise<void> {
    await this.run(["update", "--resources", resourcesFile, id]);
  }
}
