// A container's `user` ("", "name", "uid", "name:group", "uid:gid") as the numeric ids
// runc needs, looked up in the container's own /etc/passwd and /etc/group, as Docker does.
import { lstatSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { invalidArgument } from "../errors.ts";
import type { OciUser } from "./spec.ts";

/** The rows of a passwd/group file in the rootfs; a missing file (or a symlink, which could point out of the rootfs) has none. */
function rows(rootfs: string, file: string): string[][] {
  const path = join(rootfs, "etc", file);
  try {
    if (!lstatSync(path).isFile()) return [];
    return readFileSync(path, "utf8")
      .split("\n")
      .filter((line) => line && !line.startsWith("#"))
      .map((line) => line.split(":"));
  } catch {
    return [];
  }
}

const numeric = (text: string) => /^\d+$/.test(text);

export function resolveUser(user: string, rootfs: string): OciUser {
  if (!user) return { uid: 0, gid: 0 };
  const [name, group] = user.split(":", 2) as [string, string | undefined];
  const passwd = rows(rootfs, "passwd");
  const entry = passwd.find((row) => (numeric(name) ? row[2] === name : row[0] === name));
  if (!numeric(name) && !entry) throw invalidArgument(`unable to find user ${name}: no matching entries in passwd file`);
  const uid = numeric(name) ? Number(name) : Number(entry![2]);
  let gid = entry ? Number(entry[3]) : 0;
  const groups = rows(rootfs, "group");
  if (group !== undefined && group !== "") {
    if (numeric(group)) gid = Number(group);
    else {
      const row = groups.find((g) => g[0] === group);
      if (!row) throw invalidArgument(`unable to find group ${group}: no matching entries in group file`);
      gid = Number(row[2]);
    }
  }
  const userName = entry?.[0];
  const additionalGids = userName
    ? groups.filter((g) => (g[3] ?? "").split(",").includes(userName)).map((g) => Number(g[2])).filter((g) => g !== gid)
    : [];
  return additionalGids.length > 0 ? { uid, gid, additionalGids } : { uid, gid };
}
