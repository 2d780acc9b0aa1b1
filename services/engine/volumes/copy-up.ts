// Docker fills a new volume with what the image has at the mount point, the first time a
// container mounts it (unless the bind says nocopy), so an image's data directory keeps
// its files and ownership once a volume covers it. Done at create, from the container's
// rootfs mounted read-only in a temp dir.
import { execFile } from "node:child_process";
import { lstatSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { mountAll, unmountAll } from "../../../core/mounts.ts";
import type { VolumeMountPoint } from "./mounts.ts";

const run = promisify(execFile);

/**
 * The path of `destination` under `root` when every component is a real directory: a
 * symlink in the image could point the copy anywhere on the host, so such a path is not
 * copied from.
 */
function directoryIn(root: string, destination: string): string | undefined {
  let path = root;
  for (const part of destination.split("/").filter(Boolean)) {
    path = join(path, part);
    try {
      if (!lstatSync(path).isDirectory()) return undefined;
    } catch {
      return undefined;
    }
  }
  return path;
}

export async function fillNewVolumes(rootfs: Parameters<typeof mountAll>[0], points: readonly VolumeMountPoint[], created: readonly string[]): Promise<void> {
  const targets = points.filter((p) => created.includes(p.Name) && !p.Mode.split(",").includes("nocopy"));
  if (targets.length === 0) return;
  const dir = await mkdtemp(join(tmpdir(), "berth-copy-up-"));
  try {
    await mountAll(
      rootfs.map((m) => (m.type === "overlay" ? m : { ...m, options: [...m.options, "ro"] })),
      dir,
    );
    for (const point of targets) {
      const source = directoryIn(dir, point.Destination);
      if (!source || readdirSync(source).length === 0 || readdirSync(point.Source).length > 0) continue;
      // cp -a keeps owners, modes, links and times, which the container's user relies on
      await run("cp", ["-a", "--", `${source}/.`, point.Source]);
    }
  } finally {
    await unmountAll(dir, { detachBusy: true }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
