// Network namespaces that outlive the process that made them: like `ip netns add`, a new
// namespace is bind-mounted onto a file (here <state>/netns/<id>), so it stays while no
// process is in it, and a daemon started later finds it by path. runc joins it through the
// spec's namespace path; CNI plugins enter it by the same path.
import { closeSync, constants, mkdirSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import { invalidArgument } from "../errors.ts";
import { statfsType, umount, umountFlags } from "../../native/index.ts";
import { execChecked } from "../../native/spawn.ts";

/** statfs(2) f_type of nsfs, the filesystem of /proc/<pid>/ns/* and their bind mounts. */
const NSFS_MAGIC = 0x6e736673;

export function netnsPath(dir: string, id: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(id) || id.startsWith(".")) throw invalidArgument(`invalid network namespace name ${JSON.stringify(id)}`);
  return join(dir, id);
}

/** Whether `path` is a mounted namespace (not just the empty file a crash may leave). */
export function isNetnsMounted(path: string): boolean {
  try {
    return statfsType(path) === NSFS_MAGIC;
  } catch {
    return false;
  }
}

/** Why an exec failed: what it printed on stderr, else its error. */
function failureText(err: unknown): string {
  return (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
}

/**
 * Creates the namespace `dir/id` with its loopback up (what the CNI loopback plugin
 * would do) and returns its path, in one exec: unshare(1) makes the namespace, bind-
 * mounts it onto the file (Node cannot unshare a namespace for one thread of its own)
 * and runs `ip link set lo up` inside it. One that exists already (a daemon restarted
 * part way through a start) gets its loopback up through nsenter(1). On failure nothing
 * of it is left (the bind mount is undone).
 */
export async function createNetns(dir: string, id: string): Promise<string> {
  const path = netnsPath(dir, id);
  const loopbackUp = ["ip", "link", "set", "lo", "up"];
  if (isNetnsMounted(path)) {
    try {
      await execChecked("nsenter", [`--net=${path}`, ...loopbackUp]);
    } catch (err) {
      throw new Error(`cannot bring up the loopback of network namespace ${path}: ${failureText(err)}`);
    }
    return path;
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  closeSync(openSync(path, constants.O_RDONLY | constants.O_CREAT, 0o444));
  try {
    await execChecked("unshare", [`--net=${path}`, ...loopbackUp]);
  } catch (err) {
    // The namespace may be mounted already when only `ip` failed.
    removeNetns(path);
    throw new Error(`cannot create network namespace ${path} with its loopback up: ${failureText(err)}`);
  }
  return path;
}

/** Unmounts and removes the namespace file; a missing one is fine (removal is retried after crashes). */
export function removeNetns(path: string): void {
  if (isNetnsMounted(path)) {
    // Detached: a plugin or `ip` still holding it open does not make the removal fail;
    // the kernel frees the namespace when the last user goes.
    umount(path, umountFlags.MNT_DETACH);
  }
  rmSync(path, { force: true });
}
