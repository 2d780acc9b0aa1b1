// What a test run may leave on the host: every test promises to leave no process, mount,
// cgroup, network namespace, link or iptables rule behind, but each test checks only its
// own. scripts/test.ts takes this inventory before and after the whole suite and fails a
// run that passed yet left something new, so a leak shows in CI instead of on the next
// run's machine. Only what Berth's tests make is listed: mounts and processes under the
// temp directory's berth-* roots, and the host-wide kinds (links, netns, iptables rules,
// cgroups) compared before/after, since their names do not say which test made them.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const testRoots = join(tmpdir(), "berth-");

/**
 * The cgroup hierarchies a container or RUN step joins, walked this deep (parent/id, and
 * one more level). A daemon's top-level parent (/moby, /<namespace>) is not listed: left
 * empty, it stays as Docker's /docker does; the containers' cgroups under it must go.
 */
const cgroupHierarchies = ["memory", "pids", "unified"];
const cgroupDepth = 3;

function lines(command: string, args: string[]): string[] {
  const r = spawnSync(command, args, { encoding: "utf8" });
  // A tool that is missing or fails (no iptables on the host) lists nothing of its kind.
  return r.status === 0 ? r.stdout.split("\n").filter((l) => l.trim() !== "") : [];
}

function mounts(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((point) => point.startsWith(testRoots) || point.startsWith("/run/netns/"))
    .map((point) => `mount ${point}`);
}

function processes(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
      if (cmdline.includes(testRoots)) found.push(`process ${pid} ${cmdline.slice(0, 200)}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

function cgroups(): string[] {
  const found: string[] = [];
  const walk = (dir: string, rel: string, depth: number) => {
    if (depth > cgroupDepth) return;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      try {
        if (!statSync(path).isDirectory()) continue;
      } catch {
        continue;
      }
      // systemd's units come and go on their own; Berth's tests make none.
      if (/\.(slice|scope|service)$/.test(name)) continue;
      if (depth > 1) found.push(`cgroup ${rel}/${name}`);
      walk(path, `${rel}/${name}`, depth + 1);
    }
  };
  for (const hierarchy of cgroupHierarchies) walk(join("/sys/fs/cgroup", hierarchy), hierarchy, 1);
  return found;
}

/** "cgroup memory/moby/<id>" → "memory/moby". */
const topCgroup = (item: string) => item.slice("cgroup ".length).split("/").slice(0, 2).join("/");

/** Everything of the kinds above on the host now, one line per item. */
export function hostInventory(): Set<string> {
  return new Set([
    ...mounts(),
    ...processes(),
    ...cgroups(),
    ...lines("ip", ["-o", "link", "show"]).map((l) => `link ${(l.split(": ")[1] ?? l).split("@")[0]}`),
    ...lines("ip", ["netns", "list"]).map((l) => `netns ${l.split(" ")[0]}`),
    ...["filter", "nat"].flatMap((table) => lines("iptables-save", ["-t", table]).filter((l) => l.startsWith("-A ") || l.startsWith(":")).map((l) => `iptables ${table} ${l.replace(/ \[\d+:\d+\]$/, "")}`)),
  ]);
}

/**
 * What is on the host now and was not in `before`, once cleanups still under way have
 * had `graceMs` (a daemon releases a build's network after its client has the outcome).
 */
export async function leftoversSince(before: Set<string>, graceMs = 15_000): Promise<string[]> {
  // A top-level cgroup that held cgroups before the suite is another tenant's (the
  // machine's own process manager): what appears under it is not the tests' doing.
  const populated = new Set([...before].filter((item) => item.startsWith("cgroup ")).map(topCgroup));
  const ours = (item: string) => !item.startsWith("cgroup ") || !populated.has(topCgroup(item));
  const deadline = Date.now() + graceMs;
  for (;;) {
    const added = [...hostInventory()].filter((item) => !before.has(item) && ours(item));
    if (added.length === 0 || Date.now() > deadline) return added;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
