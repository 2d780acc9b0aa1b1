// What a container's rootfs needs from the engine at create: the numeric user its `-u`
// names (looked up in the image's own passwd and group files), and the /etc files a
// container with a network namespace of its own gets bound in.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountAll, unmountAll } from "../../../core/mounts.ts";
import type { OciUser } from "../../../core/oci/spec.ts";
import { resolveUser } from "../../../core/oci/user.ts";
import { badRequest } from "../http.ts";
import type { ContainerFiles } from "./config.ts";

/** The uid/gid of `user` from the image's own /etc/passwd and /etc/group (mounted read-only for the lookup). */
export async function userInRootfs(mounts: Parameters<typeof mountAll>[0], user: string): Promise<OciUser> {
  if (/^\d+(:\d+)?$/.test(user)) {
    const [uid, gid] = user.split(":");
    if (gid !== undefined) return { uid: Number(uid), gid: Number(gid) };
  }
  const target = await mkdtemp(join(tmpdir(), "berth-user-"));
  try {
    await mountAll(
      mounts.map((m) => (m.type === "overlay" ? m : { ...m, options: [...m.options, "ro"] })),
      target,
    );
    try {
      return resolveUser(user, target);
    } catch (err) {
      throw badRequest((err as Error).message.replace(/: invalid argument$/, ""));
    }
  } finally {
    await unmountAll(target, { detachBusy: true }).catch(() => undefined);
    await rm(target, { recursive: true, force: true });
  }
}

/** /etc/hosts, /etc/hostname and /etc/resolv.conf for a container with a network namespace of its own. */
export function writeContainerFiles(dir: string, hostname: string): ContainerFiles {
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const files: ContainerFiles = { hosts: join(dir, "hosts"), hostname: join(dir, "hostname"), resolvConf: join(dir, "resolv.conf") };
  writeFileSync(files.hosts, `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`);
  writeFileSync(files.hostname, `${hostname}\n`);
  // Only loopback exists in the namespace: the host's local resolvers are unreachable, others are kept.
  let resolv = "";
  try {
    resolv = readFileSync("/etc/resolv.conf", "utf8")
      .split("\n")
      .filter((line) => !/^\s*nameserver\s+(127\.|::1)/.test(line))
      .join("\n");
  } catch {
    // no resolv.conf on the host
  }
  writeFileSync(files.resolvConf, resolv);
  return files;
}
