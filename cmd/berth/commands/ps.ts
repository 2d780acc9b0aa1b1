// berth ps: the container list with docker's columns and wordings (the engine builds
// Status; the client cuts ids to 12, quotes and cuts commands to 20, says "2 minutes ago").
import type { CommandModule } from "../command.ts";
import { out } from "../command.ts";
import { filtersParam } from "../filters.ts";
import { ago, ellipsis, goTime, humanSize, printList, shortId } from "../output.ts";
import { familiarImage } from "../reference.ts";
import { displayPorts } from "../ports.ts";

interface ContainerSummary {
  Id: string;
  Names?: string[] | null;
  Image?: string;
  ImageID?: string;
  Command?: string;
  Created?: number;
  Ports?: { IP?: string; PrivatePort: number; PublicPort?: number; Type: string }[] | null;
  Labels?: Record<string, string> | null;
  State?: string;
  Status?: string;
  SizeRw?: number;
  SizeRootFs?: number;
  NetworkSettings?: { Networks?: Record<string, unknown> | null } | null;
  Mounts?: { Type?: string; Name?: string; Source?: string }[] | null;
}

const headers = {
  ID: "CONTAINER ID",
  Image: "IMAGE",
  Command: "COMMAND",
  CreatedAt: "CREATED AT",
  RunningFor: "CREATED",
  Ports: "PORTS",
  State: "STATE",
  Status: "STATUS",
  Size: "SIZE",
  Names: "NAMES",
  Labels: "LABELS",
  Mounts: "MOUNTS",
  Networks: "NETWORKS",
  LocalVolumes: "LOCAL VOLUMES",
  Label: () => "LABEL",
};

const defaultTable = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/** A row's fields, each computed only if the format uses it (CreatedAt needs the time zone, which is costly to load). */
function row(c: ContainerSummary, trunc: boolean, now: number) {
  const labels = c.Labels ?? {};
  return {
    get ID() {
      return trunc ? shortId(c.Id) : c.Id;
    },
    get Image() {
      if (!c.Image) return "<no image>";
      if (!trunc) return c.Image;
      return c.ImageID && shortId(c.ImageID) === shortId(c.Image) ? shortId(c.Image) : familiarImage(c.Image);
    },
    get Command() {
      return JSON.stringify(trunc ? ellipsis(c.Command ?? "", 20) : (c.Command ?? ""));
    },
    get CreatedAt() {
      return goTime(new Date((c.Created ?? 0) * 1000));
    },
    get RunningFor() {
      return ago(c.Created ?? 0, now);
    },
    get Ports() {
      return displayPorts(c.Ports);
    },
    get State() {
      return c.State ?? "";
    },
    get Status() {
      return c.Status ?? "";
    },
    get Size() {
      const sizeRw = humanSize(c.SizeRw ?? 0, 3);
      return c.SizeRootFs ? `${sizeRw} (virtual ${humanSize(c.SizeRootFs, 3)})` : sizeRw;
    },
    get Names() {
      const names = (c.Names ?? []).map((n) => n.replace(/^\//, ""));
      // Truncated: the container's own name, not the names links give it (they hold a "/").
      return (trunc ? names.filter((n) => !n.includes("/")).slice(0, 1) : names).join(",");
    },
    get Labels() {
      return Object.keys(labels)
        .sort()
        .map((k) => `${k}=${labels[k]}`)
        .join(",");
    },
    get Mounts() {
      return (c.Mounts ?? []).map((m) => (trunc ? ellipsis(m.Name || m.Source || "", 15) : m.Name || m.Source || "")).join(",");
    },
    get Networks() {
      return Object.keys(c.NetworkSettings?.Networks ?? {})
        .sort()
        .join(",");
    },
    get LocalVolumes() {
      return String((c.Mounts ?? []).filter((m) => m.Type === "volume").length);
    },
    Label: (name: unknown) => labels[String(name)] ?? "",
  };
}

export const commands: CommandModule = {
  ps: {
    spec: {
      usage: "ps [OPTIONS]",
      description: "List containers",
      maxArgs: 0,
      flags: [
        { name: "all", short: "a", kind: "bool", description: "Show all containers (default shows just running)" },
        { name: "filter", short: "f", kind: "list", value: "filter", description: "Filter output based on conditions provided" },
        { name: "format", kind: "string", description: "Format output using a custom template ('table', 'json', or a Go template)" },
        { name: "last", short: "n", kind: "string", value: "int", description: "Show n last created containers (includes all states)", default: "-1" },
        { name: "latest", short: "l", kind: "bool", description: "Show the latest created container (includes all states)" },
        { name: "no-trunc", kind: "bool", description: "Don't truncate output" },
        { name: "quiet", short: "q", kind: "bool", description: "Only display container IDs" },
        { name: "size", short: "s", kind: "bool", description: "Display total file sizes" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const last = f.int("last") ?? -1;
      const limit = f.bool("latest") ? 1 : last > 0 ? last : undefined;
      const format = f.string("format");
      const size = f.bool("size") || /\.Size\b/.test(format ?? "");
      const list = await ctx.client.json<ContainerSummary[]>("GET", "/containers/json", {
        query: { all: f.bool("all") || undefined, limit, size: size || undefined, filters: filtersParam(f.list("filter")) },
      });
      const trunc = !f.bool("no-trunc");
      if (f.bool("quiet")) {
        out(list.map((c) => `${trunc ? shortId(c.Id) : c.Id}\n`).join(""));
        return;
      }
      const now = Date.now();
      const table = f.bool("size") ? `${defaultTable}\t{{.Size}}` : defaultTable;
      printList(
        list.map((c) => row(c, trunc, now)),
        format,
        table,
        headers,
      );
    },
  },
};
