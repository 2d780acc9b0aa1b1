// berth cp (both ways, a tar over the archive endpoints), commit and export.
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import type { CommandModule, Context } from "../command.ts";
import { out } from "../command.ts";
import { CliError, isNotFound } from "../errors.ts";
import { refuseTerminal, saveStream } from "../files.ts";
import { splitReference } from "../reference.ts";

/** "ctr:/path" → container and path; a local path has no container (a leading "./" or "/" forces local). */
function splitCopyArg(arg: string): { container?: string; path: string } {
  if (arg.startsWith("/") || arg.startsWith(".")) return { path: arg };
  const colon = arg.indexOf(":");
  if (colon <= 0) return { path: arg };
  return { container: arg.slice(0, colon), path: arg.slice(colon + 1) };
}

interface PathStat {
  name: string;
  size: number;
  mode: number;
  linkTarget: string;
}

const goDirBit = 2 ** 31;

function statHeader(value: string | string[] | undefined): PathStat | undefined {
  if (typeof value !== "string") return undefined;
  try {
    return JSON.parse(Buffer.from(value, "base64").toString("utf8")) as PathStat;
  } catch {
    return undefined;
  }
}

/** Runs tar with the given arguments, feeding or reading its stdio. */
function tar(args: string[], cwd: string): ReturnType<typeof spawn> {
  return spawn("tar", args, { cwd, stdio: ["pipe", "pipe", "pipe"] });
}

function tarDone(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((resolveDone, reject) => {
    child.once("error", (e) => reject(new CliError(`${what}: ${e.message}`)));
    child.once("close", (code) => (code === 0 ? resolveDone() : reject(new CliError(`${what}: tar failed: ${stderr.trim()}`))));
  });
}

async function copyFromContainer(ctx: Context, container: string, src: string, dest: string): Promise<void> {
  const res = await ctx.client.request("GET", `/containers/${encodeURIComponent(container)}/archive`, { query: { path: src } }).catch((e) => {
    if (isNotFound(e)) throw new CliError(`Error response from daemon: Could not find the file ${src} in container ${container}`);
    throw e;
  });
  const stat = statHeader(res.headers["x-docker-container-path-stat"]);
  const sourceName = stat?.name ?? basename(src);
  if (dest === "-") {
    for await (const chunk of res.body) process.stdout.write(chunk as Buffer);
    return;
  }
  const target = resolve(dest);
  const destExists = existsSync(target);
  const destIsDir = destExists && statSync(target).isDirectory();
  if (!destExists && dest.endsWith("/")) throw new CliError(`destination directory "${dest}" does not exist`);
  if (!destExists && !existsSync(dirname(target))) throw new CliError(`destination parent "${dirname(target)}" does not exist`);
  // Into an existing directory: keep the source's name. Otherwise the copy takes the destination's name.
  const [cwd, rename] = destIsDir ? [target, undefined] : [dirname(target), basename(target)];
  const args = ["-x", "-f", "-", "--no-same-owner"];
  if (rename !== undefined && rename !== sourceName) args.push(`--transform=s|^${sourceName.replace(/[|\\.*^$[\]]/g, "\\$&")}|${rename.replace(/[|\\&]/g, "\\$&")}|`);
  const child = tar(args, cwd);
  res.body.pipe(child.stdin!);
  child.stdout!.resume();
  await tarDone(child, `copying ${container}:${src}`);
}

async function copyToContainer(ctx: Context, src: string, container: string, dest: string): Promise<void> {
  const source = resolve(src);
  if (!existsSync(source)) throw new CliError(`lstat ${source}: no such file or directory`);
  const base = `/containers/${encodeURIComponent(container)}/archive`;
  // The engine unpacks into an existing directory; a missing destination names the copy.
  let dir = dest;
  let name = basename(source);
  try {
    const res = await ctx.client.request("HEAD", base, { query: { path: dest } });
    res.body.resume();
    const stat = statHeader(res.headers["x-docker-container-path-stat"]);
    const isDir = stat ? stat.mode >= goDirBit || (stat.mode & goDirBit) !== 0 : dest.endsWith("/");
    if (!isDir) {
      if (statSync(source).isDirectory()) throw new CliError(`cannot copy a directory to the file ${container}:${dest}`);
      dir = dirname(dest) || "/";
      name = basename(dest);
    }
  } catch (e) {
    if (!isNotFound(e)) throw e;
    if (dest.endsWith("/")) throw new CliError(`Error response from daemon: Could not find the file ${dest} in container ${container}`);
    dir = dirname(dest) || "/";
    name = basename(dest);
  }
  const args = ["-c", "-f", "-", "--numeric-owner"];
  if (name !== basename(source)) args.push(`--transform=s|^${basename(source).replace(/[|\\.*^$[\]]/g, "\\$&")}|${name.replace(/[|\\&]/g, "\\$&")}|`);
  args.push(basename(source));
  const child = tar(args, dirname(source));
  child.stdin!.end();
  const done = tarDone(child, `copying ${src}`);
  await ctx.client.call("PUT", base, { query: { path: dir, noOverwriteDirNonDir: true }, body: child.stdout!, headers: { "Content-Type": "application/x-tar" } });
  await done;
}

export const commands: CommandModule = {
  cp: {
    spec: {
      usage: "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
      description: "Copy files/folders between a container and the local filesystem",
      minArgs: 2,
      maxArgs: 2,
      flags: [
        { name: "archive", short: "a", kind: "bool", description: "Archive mode (copy all uid/gid information)" },
        { name: "follow-link", short: "L", kind: "bool", description: "Always follow symbol link in SRC_PATH" },
        { name: "quiet", short: "q", kind: "bool", description: "Suppress progress output during copy" },
      ],
    },
    async run(ctx) {
      const from = splitCopyArg(ctx.args[0]!);
      const to = splitCopyArg(ctx.args[1]!);
      if (from.container && to.container) throw new CliError("copying between containers is not supported");
      if (!from.container && !to.container) throw new CliError("must specify at least one container source");
      if (from.container) await copyFromContainer(ctx, from.container, from.path, to.path);
      else await copyToContainer(ctx, from.path, to.container!, to.path);
    },
  },
  commit: {
    spec: {
      usage: "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
      description: "Create a new image from a container's changes",
      minArgs: 1,
      maxArgs: 2,
      flags: [
        { name: "author", short: "a", kind: "string", description: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")' },
        { name: "change", short: "c", kind: "list", description: "Apply Dockerfile instruction to the created image" },
        { name: "message", short: "m", kind: "string", description: "Commit message" },
        { name: "pause", short: "p", kind: "string", value: "bool", description: "Pause container during commit", default: "true" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const ref = ctx.args[1] ? splitReference(ctx.args[1]) : undefined;
      if (ref?.digest) throw new CliError("refusing to create a tag with a digest reference");
      const reply = await ctx.client.json<{ Id: string }>("POST", "/commit", {
        query: {
          container: ctx.args[0],
          repo: ref?.repository,
          tag: ref ? ref.tag || "latest" : undefined,
          comment: f.string("message"),
          author: f.string("author"),
          changes: f.list("change"),
          pause: f.string("pause") === "false" ? "0" : undefined,
        },
      });
      out(`${reply.Id}\n`);
    },
  },
  export: {
    spec: {
      usage: "export [OPTIONS] CONTAINER",
      description: "Export a container's filesystem as a tar archive",
      minArgs: 1,
      maxArgs: 1,
      flags: [{ name: "output", short: "o", kind: "string", description: "Write to a file, instead of STDOUT" }],
    },
    async run(ctx) {
      const target = ctx.flags.string("output");
      if (!target) refuseTerminal("export");
      const res = await ctx.client.request("GET", `/containers/${encodeURIComponent(ctx.args[0]!)}/export`);
      if (target) await saveStream(res.body, target);
      else for await (const chunk of res.body) if (!process.stdout.write(chunk as Buffer)) await new Promise((r) => process.stdout.once("drain", r));
    },
  },
};
