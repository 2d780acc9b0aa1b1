// berth volume create, ls, inspect, rm and prune: docker's flags, table, and wording.
import type { CommandModule } from "../command.ts";
import { err, out } from "../command.ts";
import { confirm } from "../confirm.ts";
import { CliError } from "../errors.ts";
import { filtersParam } from "../filters.ts";
import { humanSize, printList } from "../output.ts";
import { byName, keyValues, labelText, printInspected } from "./object-lists.ts";

interface Volume {
  Name: string;
  Driver: string;
  Scope?: string;
  Mountpoint?: string;
  Labels?: Record<string, string> | null;
  UsageData?: { Size?: number; RefCount?: number } | null;
}

const volumeHeaders = { Name: "VOLUME NAME", Driver: "DRIVER", Scope: "SCOPE", Mountpoint: "MOUNTPOINT", Labels: "LABELS", Links: "LINKS", Size: "SIZE" };

function volumeRows(volumes: Volume[]) {
  return [...volumes].sort(byName).map((v) => ({
    Name: v.Name,
    Driver: v.Driver,
    Scope: v.Scope ?? "local",
    Mountpoint: v.Mountpoint ?? "",
    Labels: labelText(v.Labels),
    Links: v.UsageData?.RefCount !== undefined && v.UsageData.RefCount >= 0 ? String(v.UsageData.RefCount) : "N/A",
    Size: v.UsageData?.Size !== undefined && v.UsageData.Size >= 0 ? humanSize(v.UsageData.Size) : "N/A",
  }));
}

const volumePath = (name: string) => `/volumes/${encodeURIComponent(name)}`;

export const commands: CommandModule = {
  "volume create": {
    spec: {
      usage: "volume create [OPTIONS] [VOLUME]",
      description: "Create a volume",
      maxArgs: 1,
      flags: [
        { name: "driver", short: "d", kind: "string", description: "Specify volume driver name", default: "local" },
        { name: "label", kind: "list", description: "Set metadata for a volume" },
        { name: "opt", short: "o", kind: "list", description: "Set driver specific options" },
        { name: "name", kind: "string", description: "Specify volume name" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const flagName = f.string("name");
      if (flagName !== undefined && ctx.args[0] !== undefined && flagName !== ctx.args[0]) {
        throw new CliError(`conflicting options: either specify --name or provide positional arg, not both`);
      }
      const volume = await ctx.client.json<Volume>("POST", "/volumes/create", {
        body: { Name: ctx.args[0] ?? flagName ?? "", Driver: f.string("driver") || "local", DriverOpts: keyValues(f.list("opt"), "--opt"), Labels: keyValues(f.list("label"), "--label") },
      });
      out(`${volume.Name}\n`);
    },
  },
  "volume ls": {
    spec: {
      usage: "volume ls [OPTIONS]",
      description: "List volumes",
      maxArgs: 0,
      flags: [
        { name: "filter", short: "f", kind: "list", value: "filter", description: "Provide filter values (e.g. \"dangling=true\")" },
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "quiet", short: "q", kind: "bool", description: "Only display volume names" },
      ],
    },
    async run(ctx) {
      const reply = await ctx.client.json<{ Volumes?: Volume[] | null }>("GET", "/volumes", { query: { filters: filtersParam(ctx.flags.list("filter")) } });
      const rows = volumeRows(reply?.Volumes ?? []);
      if (ctx.flags.bool("quiet")) {
        out(rows.map((r) => `${r.Name}\n`).join(""));
        return;
      }
      printList(rows, ctx.flags.string("format"), "table {{.Driver}}\t{{.Name}}", volumeHeaders);
    },
  },
  "volume inspect": {
    spec: {
      usage: "volume inspect [OPTIONS] VOLUME [VOLUME...]",
      description: "Display detailed information on one or more volumes",
      minArgs: 1,
      flags: [{ name: "format", short: "f", kind: "string", description: "Format output using a custom template" }],
    },
    run: (ctx) =>
      printInspected(ctx, (name) => ctx.client.json("GET", volumePath(name)), (v) => {
        // Go templates see docker's typed volume, whose absent maps print as map[].
        const volume = v as { Labels?: unknown; Options?: unknown };
        return { ...volume, Labels: volume.Labels ?? {}, Options: volume.Options ?? {} };
      }),
  },
  "volume rm": {
    spec: {
      usage: "volume rm [OPTIONS] VOLUME [VOLUME...]",
      description: "Remove one or more volumes",
      minArgs: 1,
      flags: [{ name: "force", short: "f", kind: "bool", description: "Force the removal of one or more volumes" }],
    },
    async run(ctx) {
      let failed = false;
      for (const name of ctx.args) {
        try {
          await ctx.client.call("DELETE", volumePath(name), { query: { force: ctx.flags.bool("force") || undefined } });
          out(`${name}\n`);
        } catch (e) {
          if (!(e instanceof CliError)) throw e;
          err(`${e.message}\n`);
          failed = true;
        }
      }
      return failed ? 1 : 0;
    },
  },
  "volume prune": {
    spec: {
      usage: "volume prune [OPTIONS]",
      description: "Remove unused local volumes",
      maxArgs: 0,
      flags: [
        { name: "filter", kind: "list", value: "filter", description: "Provide filter values (e.g. \"label=<label>\")" },
        { name: "force", short: "f", kind: "bool", description: "Do not prompt for confirmation" },
      ],
    },
    async run(ctx) {
      const warning = "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue?";
      if (!ctx.flags.bool("force") && !(await confirm(warning))) return;
      const reply = await ctx.client.json<{ VolumesDeleted?: string[] | null; SpaceReclaimed?: number }>("POST", "/volumes/prune", { query: { filters: filtersParam(ctx.flags.list("filter")) } });
      const deleted = reply?.VolumesDeleted ?? [];
      if (deleted.length) out(`Deleted Volumes:\n${deleted.map((n) => `${n}\n`).join("")}\n`);
      out(`Total reclaimed space: ${humanSize(deleted.length ? (reply?.SpaceReclaimed ?? 0) : 0)}\n`);
    },
  },
};
