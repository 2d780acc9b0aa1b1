// berth images, tag, rmi, save, load, history and image prune.
import { createReadStream, existsSync } from "node:fs";
import type { CommandModule } from "../command.ts";
import { err, out } from "../command.ts";
import { confirm } from "../confirm.ts";
import { CliError } from "../errors.ts";
import { refuseTerminal, saveStream } from "../files.ts";
import { filtersParam } from "../filters.ts";
import { ago, ellipsis, goTime, humanSize, printList, shortId } from "../output.ts";
import { MessageRenderer } from "../progress.ts";
import { splitReference } from "../reference.ts";

interface ImageSummary {
  Id: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Created?: number;
  Size?: number;
  SharedSize?: number;
  VirtualSize?: number;
  Containers?: number;
  Labels?: Record<string, string> | null;
}

const imageHeaders = {
  Repository: "REPOSITORY",
  Tag: "TAG",
  ID: "IMAGE ID",
  Digest: "DIGEST",
  CreatedSince: "CREATED",
  CreatedAt: "CREATED AT",
  Size: "SIZE",
  Containers: "CONTAINERS",
  SharedSize: "SHARED SIZE",
  UniqueSize: "UNIQUE SIZE",
  VirtualSize: "VIRTUAL SIZE",
};

/** One row per tag (and one per untagged digest), as docker lists images. */
function imageRows(images: ImageSummary[], trunc: boolean, now: number) {
  const rows = [];
  for (const image of images) {
    const base = {
      ID: trunc ? shortId(image.Id) : image.Id,
      CreatedSince: ago(image.Created ?? 0, now),
      CreatedAt: goTime(new Date((image.Created ?? 0) * 1000)),
      Size: humanSize(image.Size ?? 0, 3),
      Containers: image.Containers === undefined || image.Containers < 0 ? "N/A" : String(image.Containers),
      SharedSize: image.SharedSize === undefined || image.SharedSize < 0 ? "N/A" : humanSize(image.SharedSize, 3),
      UniqueSize: image.SharedSize === undefined || image.SharedSize < 0 ? "N/A" : humanSize((image.Size ?? 0) - image.SharedSize, 3),
      VirtualSize: humanSize(image.VirtualSize ?? image.Size ?? 0, 3),
    };
    const digests = image.RepoDigests ?? [];
    const digestOf = (repo: string) => digests.find((d) => d.startsWith(`${repo}@`))?.slice(repo.length + 1) ?? "<none>";
    const tags = image.RepoTags ?? [];
    for (const t of tags) {
      const { repository, tag } = splitReference(t);
      rows.push({ ...base, Repository: repository, Tag: tag || "<none>", Digest: digestOf(repository) });
    }
    const tagged = new Set(tags.map((t) => splitReference(t).repository));
    for (const d of digests) {
      const at = d.indexOf("@");
      if (!tagged.has(d.slice(0, at))) rows.push({ ...base, Repository: d.slice(0, at), Tag: "<none>", Digest: d.slice(at + 1) });
    }
    if (tags.length === 0 && digests.length === 0) rows.push({ ...base, Repository: "<none>", Tag: "<none>", Digest: "<none>" });
  }
  return rows;
}

interface DeleteItem {
  Untagged?: string;
  Deleted?: string;
}

export const commands: CommandModule = {
  images: {
    spec: {
      usage: "images [OPTIONS] [REPOSITORY[:TAG]]",
      description: "List images",
      maxArgs: 1,
      flags: [
        { name: "all", short: "a", kind: "bool", description: "Show all images (default hides intermediate images)" },
        { name: "digests", kind: "bool", description: "Show digests" },
        { name: "filter", short: "f", kind: "list", value: "filter", description: "Filter output based on conditions provided" },
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "no-trunc", kind: "bool", description: "Don't truncate output" },
        { name: "quiet", short: "q", kind: "bool", description: "Only show image IDs" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const filters = [...f.list("filter"), ...(ctx.args[0] ? [`reference=${ctx.args[0]}`] : [])];
      const images = await ctx.client.json<ImageSummary[]>("GET", "/images/json", { query: { all: f.bool("all") || undefined, filters: filtersParam(filters) } });
      const trunc = !f.bool("no-trunc");
      if (f.bool("quiet")) {
        // One line per row, as docker prints them (an image with two tags shows twice).
        out(imageRows(images, trunc, Date.now()).map((r) => `${r.ID}\n`).join(""));
        return;
      }
      const table = f.bool("digests")
        ? "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        : "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
      printList(imageRows(images, trunc, Date.now()), f.string("format"), table, imageHeaders);
    },
  },
  tag: {
    spec: { usage: "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", description: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", minArgs: 2, maxArgs: 2, flags: [] },
    async run(ctx) {
      const { repository, tag } = splitReference(ctx.args[1]!);
      await ctx.client.call("POST", `/images/${ctx.args[0]}/tag`, { query: { repo: repository, tag: tag || "latest" } });
    },
  },
  rmi: {
    spec: {
      usage: "rmi [OPTIONS] IMAGE [IMAGE...]",
      description: "Remove one or more images",
      minArgs: 1,
      flags: [
        { name: "force", short: "f", kind: "bool", description: "Force removal of the image" },
        { name: "no-prune", kind: "bool", description: "Do not delete untagged parents" },
      ],
    },
    async run(ctx) {
      let failed = false;
      for (const image of ctx.args) {
        try {
          const items = await ctx.client.json<DeleteItem[]>("DELETE", `/images/${image}`, { query: { force: ctx.flags.bool("force") || undefined, noprune: ctx.flags.bool("no-prune") || undefined } });
          for (const item of items ?? []) out(item.Untagged ? `Untagged: ${item.Untagged}\n` : `Deleted: ${item.Deleted}\n`);
        } catch (e) {
          if (!(e instanceof CliError)) throw e;
          err(`${e.message}\n`);
          failed = true;
        }
      }
      return failed ? 1 : 0;
    },
  },
  save: {
    spec: {
      usage: "save [OPTIONS] IMAGE [IMAGE...]",
      description: "Save one or more images to a tar archive (streamed to STDOUT by default)",
      minArgs: 1,
      flags: [{ name: "output", short: "o", kind: "string", description: "Write to a file, instead of STDOUT" }],
    },
    async run(ctx) {
      const target = ctx.flags.string("output");
      if (!target) refuseTerminal("save");
      const res = await ctx.client.request("GET", "/images/get", { query: { names: ctx.args } });
      if (target) await saveStream(res.body, target);
      else {
        for await (const chunk of res.body) {
          if (!process.stdout.write(chunk as Buffer)) await new Promise((r) => process.stdout.once("drain", r));
        }
      }
    },
  },
  load: {
    spec: {
      usage: "load [OPTIONS]",
      description: "Load an image from a tar archive or STDIN",
      maxArgs: 0,
      flags: [
        { name: "input", short: "i", kind: "string", description: "Read from tar archive file, instead of STDIN" },
        { name: "quiet", short: "q", kind: "bool", description: "Suppress the load output" },
      ],
    },
    async run(ctx) {
      const input = ctx.flags.string("input");
      if (input !== undefined && !existsSync(input)) throw new CliError(`open ${input}: no such file or directory`);
      if (input === undefined && process.stdin.isTTY) throw new CliError("requested load from stdin, but stdin is empty");
      const body = input !== undefined ? createReadStream(input) : process.stdin;
      const res = await ctx.client.request("POST", "/images/load", {
        query: { quiet: ctx.flags.bool("quiet") || !process.stdout.isTTY || undefined },
        body,
        headers: { "Content-Type": "application/x-tar" },
      });
      await new MessageRenderer().consume(res.body);
    },
  },
  history: {
    spec: {
      usage: "history [OPTIONS] IMAGE",
      description: "Show the history of an image",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "no-trunc", kind: "bool", description: "Don't truncate output" },
        { name: "quiet", short: "q", kind: "bool", description: "Only show image IDs" },
      ],
    },
    async run(ctx) {
      const trunc = !ctx.flags.bool("no-trunc");
      const items = await ctx.client.json<{ Id: string; Created: number; CreatedBy: string; Size: number; Comment: string; Tags: string[] | null }[]>("GET", `/images/${ctx.args[0]}/history`);
      const now = Date.now();
      const rows = items.map((h) => ({
        ID: h.Id === "<missing>" || !trunc ? h.Id : shortId(h.Id),
        CreatedSince: ago(h.Created, now),
        CreatedAt: goTime(new Date(h.Created * 1000)),
        CreatedBy: trunc ? ellipsis(h.CreatedBy.replace(/\t/g, " "), 45) : h.CreatedBy,
        Size: humanSize(h.Size, 3),
        Comment: h.Comment,
        Tags: (h.Tags ?? []).join(", "),
      }));
      if (ctx.flags.bool("quiet")) {
        out(rows.map((r) => `${r.ID}\n`).join(""));
        return;
      }
      printList(rows, ctx.flags.string("format"), "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}", {
        ID: "IMAGE",
        CreatedSince: "CREATED",
        CreatedAt: "CREATED AT",
        CreatedBy: "CREATED BY",
        Size: "SIZE",
        Comment: "COMMENT",
        Tags: "TAGS",
      });
    },
  },
  "image prune": {
    spec: {
      usage: "image prune [OPTIONS]",
      description: "Remove unused images",
      maxArgs: 0,
      flags: [
        { name: "all", short: "a", kind: "bool", description: "Remove all unused images, not just dangling ones" },
        { name: "filter", kind: "list", value: "filter", description: "Provide filter values (e.g. \"until=<timestamp>\")" },
        { name: "force", short: "f", kind: "bool", description: "Do not prompt for confirmation" },
      ],
    },
    async run(ctx) {
      const all = ctx.flags.bool("all");
      if (!ctx.flags.bool("force")) {
        const warning = all
          ? "WARNING! This will remove all images without at least one container associated to them."
          : "WARNING! This will remove all dangling images.";
        if (!(await confirm(`${warning}\nAre you sure you want to continue?`))) return;
      }
      const filters = [...ctx.flags.list("filter"), `dangling=${all ? "false" : "true"}`];
      const reply = await ctx.client.json<{ ImagesDeleted?: DeleteItem[] | null; SpaceReclaimed?: number }>("POST", "/images/prune", { query: { filters: filtersParam(filters) } });
      const deleted = reply?.ImagesDeleted ?? [];
      if (deleted.length) {
        out("Deleted Images:\n");
        for (const item of deleted) out(item.Untagged ? `untagged: ${item.Untagged}\n` : `deleted: ${item.Deleted}\n`);
        out("\n");
      }
      out(`Total reclaimed space: ${humanSize(reply?.SpaceReclaimed ?? 0)}\n`);
    },
  },
};
