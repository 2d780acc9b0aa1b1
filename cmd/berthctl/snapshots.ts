// berthctl snapshots (snapshot, snap): ls, prepare, view, mounts, commit, rm, usage,
// tree, info, label — as ctr snapshots, with the same output.
import { Option, type Command } from "commander";
import { Kind, SnapshotsDefinition, type Info } from "../../core/gen/containerd/services/snapshots/v1/snapshots.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import type { Timestamp } from "../../core/gen/google/protobuf/timestamp.ts";
import { CommandError, messageOf, writeOut } from "./output.ts";
import { formatLabels, labelUpdate, type Session } from "./session.ts";
import { Table } from "./tabwriter.ts";
import { binarySize } from "./units.ts";

const kindNames: Record<number, string> = { [Kind.VIEW]: "View", [Kind.ACTIVE]: "Active", [Kind.COMMITTED]: "Committed" };
const kindName = (kind: Kind) => kindNames[kind] ?? "Unknown";

/** Go's time.RFC3339Nano for a UTC time: fraction without trailing zeros, or none. */
function rfc3339Nano(ts: Timestamp | undefined): string {
  const seconds = ts?.seconds ?? -62135596800n;
  const nanos = ts?.nanos ?? 0;
  // toISOString covers years 0-9999 (the Go zero time included) with four digits.
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  const fraction = nanos > 0 ? `.${String(nanos).padStart(9, "0").replace(/0+$/, "")}` : "";
  return `${base}${fraction}Z`;
}

/** The JSON ctr prints for a snapshots.Info (json.MarshalIndent, four spaces). */
function infoJson(info: Info): string {
  const out: Record<string, unknown> = { Kind: kindName(info.kind), Name: info.name };
  if (info.parent !== "") out.Parent = info.parent;
  if (Object.keys(info.labels).length > 0) out.Labels = sortedObject(info.labels);
  out.Created = rfc3339Nano(info.createdAt);
  out.Updated = rfc3339Nano(info.updatedAt);
  return JSON.stringify(out, null, 4);
}

/** Go's encoding/json writes map keys sorted. */
function sortedObject(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function mountsJson(mounts: Mount[]): string {
  return JSON.stringify(
    mounts.map((m) => ({ Type: m.type, Source: m.source, Options: m.options })),
    null,
    4,
  );
}

const mountLines = (target: string, mounts: Mount[]) =>
  mounts.map((m) => `mount -t ${m.type} ${m.source} ${target} -o ${m.options.join(",")}\n`).join("");

/** Labels ctr's prepare and commit add so the snapshot survives garbage collection. */
const gcRoot = () => ({ "containerd.io/gc.root": new Date().toISOString().replace(/\.\d+Z$/, "Z") });

interface Context {
  session: Session;
  snapshotter: string;
}

/** ctr's snapshots tree: roots in listing order, children indented under their parent. */
function treeText(infos: Info[]): string {
  const nodes: { name: string; parent: string; children: string[] }[] = [];
  const index = new Map<string, (typeof nodes)[number]>();
  const add = (name: string, parent: string): (typeof nodes)[number] => {
    let node = index.get(name);
    if (!node) {
      node = { name, parent, children: [] };
      nodes.push(node);
      index.set(name, node);
    } else {
      node.parent = parent;
    }
    if (parent !== "") (index.get(parent) ?? add(parent, "")).children.push(name);
    return node;
  };
  for (const info of infos) add(info.name, info.parent);
  let out = "";
  const print = (name: string, level: number) => {
    const node = index.get(name)!;
    out += `${"  ".repeat(level)}${level > 0 ? "\\_" : ""} ${node.name}\n`;
    for (const child of node.children) print(child, level + 1);
  };
  for (const node of nodes) if (node.parent === "") print(node.name, 0);
  return out;
}

export function registerSnapshots(program: Command, session: (cmd: Command) => Session): void {
  const snapshots = program
    .command("snapshots")
    .aliases(["snapshot", "snap"])
    .description("manage snapshots")
    .addOption(new Option("--snapshotter <name>", "snapshotter name").env("BERTH_SNAPSHOTTER").default("overlayfs"));

  const context = (cmd: Command): Context => ({
    session: session(cmd),
    snapshotter: cmd.optsWithGlobals<{ snapshotter: string }>().snapshotter || "overlayfs",
  });

  const listAll = async ({ session: s, snapshotter }: Context): Promise<Info[]> => {
    const infos: Info[] = [];
    for await (const batch of s.client(SnapshotsDefinition).list({ snapshotter, filters: [] }, s.call())) infos.push(...batch.info);
    return infos;
  };

  snapshots
    .command("list")
    .alias("ls")
    .description("list snapshots")
    .action(async (_opts: unknown, cmd: Command) => {
      const table = new Table().line("KEY\tPARENT\tKIND\t");
      for (const info of await listAll(context(cmd))) table.line(`${info.name}\t${info.parent}\t${kindName(info.kind)}\t`);
      await writeOut(table.toString());
    });

  for (const [name, description] of [
    ["prepare", "prepare a snapshot from a committed snapshot"],
    ["view", "create a read-only snapshot from a committed snapshot"],
  ] as const) {
    snapshots
      .command(name)
      .description(description)
      .option("-t, --target <path>", "mount target path, will print mount, if provided")
      .option("--mounts", "Print out snapshot mounts as JSON")
      .argument("[key]")
      .argument("[parent]")
      .argument("[extra...]")
      .action(async (key: string | undefined, parent: string | undefined, extra: string[], opts: { target?: string; mounts?: boolean }, cmd: Command) => {
        if (!key || extra.length > 0) return cmd.outputHelp();
        const { session: s, snapshotter } = context(cmd);
        const client = s.client(SnapshotsDefinition);
        const request = { snapshotter, key, parent: parent ?? "" };
        // Like ctr, only prepare marks its snapshot as a GC root.
        const { mounts } =
          name === "prepare" ? await client.prepare({ ...request, labels: gcRoot() }, s.call()) : await client.view(request, s.call());
        if (opts.target) await writeOut(mountLines(opts.target, mounts));
        if (opts.mounts) await writeOut(`${mountsJson(mounts)}\n`);
      });
  }

  snapshots
    .command("mounts")
    .aliases(["m", "mount"])
    .description("mount gets mount commands for the snapshots")
    .argument("[target]")
    .argument("[key]")
    .argument("[extra...]")
    .action(async (target: string | undefined, key: string | undefined, extra: string[], _opts: unknown, cmd: Command) => {
      if (target === undefined || key === undefined || extra.length > 0) return cmd.outputHelp();
      const { session: s, snapshotter } = context(cmd);
      const { mounts } = await s.client(SnapshotsDefinition).mounts({ snapshotter, key }, s.call());
      await writeOut(mountLines(target, mounts));
    });

  snapshots
    .command("commit")
    .description("commit an active snapshot into the provided name")
    .argument("[name]")
    .argument("[key]")
    .argument("[extra...]")
    .action(async (name: string | undefined, key: string | undefined, extra: string[], _opts: unknown, cmd: Command) => {
      if (name === undefined || key === undefined || extra.length > 0) return cmd.outputHelp();
      const { session: s, snapshotter } = context(cmd);
      await s.client(SnapshotsDefinition).commit({ snapshotter, name, key, labels: gcRoot() }, s.call());
    });

  snapshots
    .command("delete")
    .aliases(["del", "remove", "rm"])
    .description("remove snapshots")
    .argument("[keys...]")
    .action(async (keys: string[], _opts: unknown, cmd: Command) => {
      const { session: s, snapshotter } = context(cmd);
      const client = s.client(SnapshotsDefinition);
      for (const key of keys) {
        try {
          await client.remove({ snapshotter, key }, s.call());
        } catch (err) {
          throw new CommandError(`failed to remove ${JSON.stringify(key)}: ${messageOf(err)}`);
        }
      }
    });

  snapshots
    .command("usage")
    .description("usage snapshots")
    .option("-b", "display size in bytes")
    .argument("[keys...]")
    .action(async (keys: string[], opts: { b?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const { session: s, snapshotter } = ctx;
      const client = s.client(SnapshotsDefinition);
      const display = (size: bigint) => (opts.b ? size.toString() : binarySize(size));
      const table = new Table().line("KEY\tSIZE\tINODES\t");
      const names = keys.length > 0 ? keys : (await listAll(ctx)).map((info) => info.name);
      // Like ctr, an error prints no table at all.
      for (const key of names) {
        const usage = await client.usage({ snapshotter, key }, s.call());
        table.line(`${key}\t${display(usage.size)}\t${usage.inodes}\t`);
      }
      await writeOut(table.toString());
    });

  snapshots
    .command("tree")
    .description("display tree view of snapshot branches")
    .action(async (_opts: unknown, cmd: Command) => {
      await writeOut(treeText(await listAll(context(cmd))));
    });

  snapshots
    .command("info")
    .description("get info about a snapshot")
    .argument("[key]")
    .argument("[extra...]")
    .action(async (key: string | undefined, extra: string[], _opts: unknown, cmd: Command) => {
      if (key === undefined || extra.length > 0) return cmd.outputHelp();
      const { session: s, snapshotter } = context(cmd);
      const { info } = await s.client(SnapshotsDefinition).stat({ snapshotter, key }, s.call());
      await writeOut(`${infoJson(info!)}\n`);
    });

  snapshots
    .command("label")
    .description("add labels to content")
    .argument("[name]")
    .argument("[labels...]", "<label>=<value> labels")
    .action(async (name: string | undefined, args: string[], _opts: unknown, cmd: Command) => {
      const { session: s, snapshotter } = context(cmd);
      const client = s.client(SnapshotsDefinition);
      const key = name ?? "";
      const { labels, paths } = labelUpdate(args);
      // Nothing to change: show the labels rather than clear them.
      const { info } =
        paths.length === 0
          ? await client.stat({ snapshotter, key }, s.call())
          : await client.update({ snapshotter, info: { name: key, labels }, updateMask: paths }, s.call());
      await writeOut(`${formatLabels(info!.labels)}\n`);
    });
}
