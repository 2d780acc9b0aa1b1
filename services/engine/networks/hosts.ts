// A container's /etc/hosts: localhost, its own name at its first address, and — on
// user-defined networks — every peer's name and aliases at the peer's address. This is
// how containers find each other by name (no embedded DNS server): the engine rewrites
// the file of every container on a network when a peer attaches or leaves.
import { closeSync, constants, ftruncateSync, openSync, writeSync } from "node:fs";

export interface HostEntry {
  address: string;
  names: string[];
}

const preamble = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"];

export function hostsContent(entries: readonly HostEntry[]): string {
  const lines = [...preamble];
  for (const entry of entries) {
    const names = [...new Set(entry.names.filter(Boolean))];
    if (entry.address && names.length > 0) lines.push(`${entry.address}\t${names.join(" ")}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * Rewrites the file in place: it is bind-mounted into a running container, and a rename
 * would leave the container seeing the old inode. A missing file is skipped (the
 * container's files are gone with it).
 */
export function rewriteInPlace(path: string, content: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  try {
    const bytes = Buffer.from(content);
    ftruncateSync(fd, 0);
    for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset, bytes.length - offset, offset);
  } finally {
    closeSync(fd);
  }
}
