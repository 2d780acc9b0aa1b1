// berth version, info, events, system df, builder prune, login and logout.
import { arch, platform } from "node:process";
import type { Context, CommandModule } from "../command.ts";
import { err, out } from "../command.ts";

import { CliError } from "../errors.ts";
import { confirm } from "../confirm.ts";
import { parseBytes } from "../container-config.ts";
import { filtersParam } from "../filters.ts";
import { binarySize, humanSize, printList } from "../output.ts";
import { Template } from "../template.ts";
import { clientApiVersion, clientVersion } from "../version-info.ts";
import { configDir, readConfig, registryKey, dockerHubServer, writeConfig } from "../auth.ts";
import { parseTimeFlag } from "../times.ts";

const goArch = (a: string) => ({ x64: "amd64", arm64: "arm64", ia32: "386" })[a] ?? a;

interface VersionReply {
  Platform?: { Name?: string };
  Components?: { Name: string; Version: string; Details?: Record<string, string> }[];
  Version?: string;
  ApiVersion?: string;
  MinAPIVersion?: string;
  GitCommit?: string;
  GoVersion?: string;
  Os?: string;
  Arch?: string;
  BuildTime?: string;
  Experimental?: boolean;
}

/** Label/value lines with docker's alignment (values start in one column). */
function lines(indent: string, width: number, pairs: [string, string][]): string {
  return pairs.map(([k, v]) => `${indent}${`${k}:`.padEnd(width)}${v}`.trimEnd() + "\n").join("");
}

function clientSection(ctx: Context): string {
  return `Client:\n${lines(" ", 19, [
    ["Version", clientVersion],
    ["API version", clientApiVersion],
    ["Node version", process.version],
    ["OS/Arch", `${platform}/${goArch(arch)}`],
    ["Context", ctx.host.context],
  ])}`;
}

function serverSection(v: VersionReply): string {
  let text = `\nServer:${v.Platform?.Name ? ` ${v.Platform.Name}` : ""}\n`;
  for (const c of v.Components ?? []) {
    text += ` ${c.Name}:\n`;
    if (c.Name === "Engine") {
      const d = c.Details ?? {};
      text += lines("  ", 18, [
        ["Version", c.Version],
        ["API version", `${d.ApiVersion ?? v.ApiVersion} (minimum version ${d.MinAPIVersion ?? v.MinAPIVersion})`],
        ["Go version", d.GoVersion ?? v.GoVersion ?? ""],
        ["Git commit", d.GitCommit ?? v.GitCommit ?? ""],
        ["Built", d.BuildTime ?? v.BuildTime ?? ""],
        ["OS/Arch", `${d.Os ?? v.Os}/${d.Arch ?? v.Arch}`],
        ["Experimental", String(d.Experimental ?? v.Experimental ?? false)],
      ]);
    } else {
      text += lines("  ", 18, [["Version", c.Version], ...Object.entries(c.Details ?? {})]);
    }
  }
  return text;
}

type Info = Record<string, unknown> & {
  Warnings?: string[] | null;
  DriverStatus?: [string, string][] | null;
  Plugins?: Record<string, string[] | null>;
  Runtimes?: Record<string, unknown>;
  RegistryConfig?: { InsecureRegistryCIDRs?: string[] | null };
  Labels?: string[] | null;
};

function infoText(ctx: Context, i: Info): string {
  const s = (k: string) => (i[k] === undefined || i[k] === null ? "" : String(i[k]));
  let t = `Client:\n Version:    ${clientVersion}\n Context:    ${ctx.host.context}\n Debug Mode: ${ctx.globals.debug}\n\nServer:\n`;
  t += ` Containers: ${s("Containers")}\n  Running: ${s("ContainersRunning")}\n  Paused: ${s("ContainersPaused")}\n  Stopped: ${s("ContainersStopped")}\n`;
  t += ` Images: ${s("Images")}\n Server Version: ${s("ServerVersion")}\n Storage Driver: ${s("Driver")}\n`;
  for (const [k, v] of i.DriverStatus ?? []) t += `  ${k}: ${v}\n`;
  t += ` Logging Driver: ${s("LoggingDriver")}\n Cgroup Driver: ${s("CgroupDriver")}\n Cgroup Version: ${s("CgroupVersion")}\n Plugins:\n`;
  for (const [k, v] of Object.entries(i.Plugins ?? {})) t += `  ${k}: ${(v ?? []).join(" ")}\n`;
  t += ` Runtimes: ${Object.keys(i.Runtimes ?? {}).sort().join(" ")}\n Default Runtime: ${s("DefaultRuntime")}\n`;
  t += ` Kernel Version: ${s("KernelVersion")}\n Operating System: ${s("OperatingSystem")}\n OSType: ${s("OSType")}\n Architecture: ${s("Architecture")}\n`;
  t += ` CPUs: ${s("NCPU")}\n Total Memory: ${binarySize(Number(i.MemTotal ?? 0))}\n Name: ${s("Name")}\n ID: ${s("ID")}\n Docker Root Dir: ${s("DockerRootDir")}\n`;
  t += ` Debug Mode: ${Boolean(i.Debug)}\n Experimental: ${Boolean(i.ExperimentalBuild)}\n`;
  const labels = i.Labels ?? [];
  if (labels.length) t += ` Labels:\n${labels.map((l) => `  ${l}\n`).join("")}`;
  const insecure = i.RegistryConfig?.InsecureRegistryCIDRs ?? [];
  if (insecure.length) t += ` Insecure Registries:\n${insecure.map((l) => `  ${l}\n`).join("")}`;
  t += ` Live Restore Enabled: ${Boolean(i.LiveRestoreEnabled)}\n`;
  return t;
}

interface EventMessage {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

/** RFC 3339 in UTC with all nine digits of nanoseconds, as docker's event lines read. */
function rfc3339NanoFixed(timeNano: bigint): string {
  const seconds = timeNano / 1_000_000_000n;
  const nanos = timeNano % 1_000_000_000n;
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${base}.${nanos.toString().padStart(9, "0")}Z`;
}

function eventLine(e: EventMessage, raw: string): string {
  const nano = /"timeNano":(\d+)/.exec(raw)?.[1];
  const when = nano ? BigInt(nano) : BigInt(e.time ?? 0) * 1_000_000_000n;
  const attrs = e.Actor?.Attributes ?? {};
  const keys = Object.keys(attrs).sort();
  const shown = keys.length ? ` (${keys.map((k) => `${k}=${attrs[k]}`).join(", ")})` : "";
  return `${rfc3339NanoFixed(when)} ${e.Type} ${e.Action} ${e.Actor?.ID ?? ""}${shown}\n`;
}

interface DiskUsage {
  LayersSize?: number;
  Images?: { Containers?: number; Size?: number; SharedSize?: number }[] | null;
  Containers?: { State?: string; SizeRw?: number }[] | null;
  Volumes?: { UsageData?: { RefCount?: number; Size?: number } }[] | null;
  BuildCache?: { Size?: number; InUse?: boolean; Shared?: boolean }[] | null;
  BuilderSize?: number;
}

function reclaimable(size: number, total: number): string {
  return total > 0 ? `${humanSize(size)} (${Math.trunc((100 * size) / total)}%)` : humanSize(size);
}

export const commands: CommandModule = {
  version: {
    spec: { usage: "version [OPTIONS]", description: "Show the berth version information", maxArgs: 0, flags: [{ name: "format", short: "f", kind: "string", description: "Format output using a custom template" }] },
    async run(ctx) {
      const format = ctx.flags.string("format");
      const template = format ? new Template(format === "json" ? "{{json .}}" : format) : undefined;
      if (!template) out(clientSection(ctx));
      const v = await ctx.client.json<VersionReply>("GET", "/version");
      if (template) {
        const client = { Version: clientVersion, ApiVersion: clientApiVersion, NodeVersion: process.version, Os: platform, Arch: goArch(arch), Context: ctx.host.context };
        out(`${template.render({ Client: client, Server: v })}\n`);
        return;
      }
      out(serverSection(v));
    },
  },
  info: {
    spec: { usage: "info [OPTIONS]", description: "Display system-wide information", maxArgs: 0, flags: [{ name: "format", short: "f", kind: "string", description: "Format output using a custom template" }] },
    async run(ctx) {
      const info = await ctx.client.json<Info>("GET", "/info");
      const format = ctx.flags.string("format");
      if (format) {
        out(`${new Template(format === "json" ? "{{json .}}" : format).render(info)}\n`);
        return;
      }
      out(infoText(ctx, info));
      for (const w of info.Warnings ?? []) err(`${w}\n`);
    },
  },
  events: {
    spec: {
      usage: "events [OPTIONS]",
      description: "Get real time events from the server",
      maxArgs: 0,
      flags: [
        { name: "filter", short: "f", kind: "list", value: "filter", description: "Filter output based on conditions provided" },
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "since", kind: "string", description: "Show all events created since timestamp" },
        { name: "until", kind: "string", description: "Stream events until this timestamp" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const now = Date.now();
      const format = f.string("format");
      const template = format ? new Template(format === "json" ? "{{json .}}" : format) : undefined;
      const res = await ctx.client.request("GET", "/events", {
        query: { since: parseTimeFlag(f.string("since"), "since", now), until: parseTimeFlag(f.string("until"), "until", now), filters: filtersParam(f.list("filter")) },
      });
      let buffered = "";
      for await (const chunk of res.body) {
        buffered += (chunk as Buffer).toString("utf8");
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (!line) continue;
          const event = JSON.parse(line) as EventMessage;
          out(template ? `${template.render(event)}\n` : eventLine(event, line));
        }
      }
    },
  },
  "system df": {
    spec: { usage: "system df [OPTIONS]", description: "Show docker disk usage", maxArgs: 0, flags: [{ name: "format", kind: "string", description: "Format output using a custom template" }] },
    async run(ctx) {
      const df = await ctx.client.json<DiskUsage>("GET", "/system/df");
      const images = df.Images ?? [];
      const imageTotal = df.LayersSize ?? images.reduce((n, i) => n + (i.Size ?? 0), 0);
      const imageUsed = images.filter((i) => (i.Containers ?? 0) > 0).reduce((n, i) => n + (i.Size ?? 0) - Math.max(0, i.SharedSize ?? 0), 0);
      const containers = df.Containers ?? [];
      const cTotal = containers.reduce((n, c) => n + (c.SizeRw ?? 0), 0);
      const cFree = containers.filter((c) => c.State !== "running").reduce((n, c) => n + (c.SizeRw ?? 0), 0);
      const volumes = df.Volumes ?? [];
      const vTotal = volumes.reduce((n, v) => n + Math.max(0, v.UsageData?.Size ?? 0), 0);
      const vFree = volumes.filter((v) => (v.UsageData?.RefCount ?? 0) === 0).reduce((n, v) => n + Math.max(0, v.UsageData?.Size ?? 0), 0);
      const cache = df.BuildCache ?? [];
      // As docker's: the cache's own size (not what it shares with images), less what containers use.
      const bTotal = df.BuilderSize ?? cache.filter((b) => !b.Shared).reduce((n, b) => n + (b.Size ?? 0), 0);
      const bUsed = cache.filter((b) => b.InUse && !b.Shared).reduce((n, b) => n + (b.Size ?? 0), 0);
      const rows = [
        { Type: "Images", TotalCount: String(images.length), Active: String(images.filter((i) => (i.Containers ?? 0) > 0).length), Size: humanSize(imageTotal), Reclaimable: reclaimable(Math.max(0, imageTotal - imageUsed), imageTotal) },
        { Type: "Containers", TotalCount: String(containers.length), Active: String(containers.filter((c) => c.State === "running").length), Size: humanSize(cTotal), Reclaimable: reclaimable(cFree, cTotal) },
        { Type: "Local Volumes", TotalCount: String(volumes.length), Active: String(volumes.filter((v) => (v.UsageData?.RefCount ?? 0) > 0).length), Size: humanSize(vTotal), Reclaimable: reclaimable(vFree, vTotal) },
        { Type: "Build Cache", TotalCount: String(cache.length), Active: String(cache.filter((b) => b.InUse).length), Size: humanSize(bTotal), Reclaimable: humanSize(Math.max(0, bTotal - bUsed)) },
      ];
      printList(rows, ctx.flags.string("format"), "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}", {
        Type: "TYPE",
        TotalCount: "TOTAL",
        Active: "ACTIVE",
        Size: "SIZE",
        Reclaimable: "RECLAIMABLE",
      });
    },
  },
  "builder prune": {
    spec: {
      usage: "builder prune [OPTIONS]",
      description: "Remove build cache",
      maxArgs: 0,
      flags: [
        { name: "all", short: "a", kind: "bool", description: "Remove all unused build cache, not just dangling ones" },
        { name: "filter", kind: "list", value: "filter", description: "Provide filter values (e.g. \"until=24h\")" },
        { name: "force", short: "f", kind: "bool", description: "Do not prompt for confirmation" },
        { name: "keep-storage", kind: "string", value: "bytes", description: "Amount of disk space to keep for cache" },
      ],
    },
    async run(ctx) {
      const all = ctx.flags.bool("all");
      const keep = ctx.flags.string("keep-storage");
      const keepStorage = keep ? parseBytes(keep, "keep-storage") : undefined;
      if (!ctx.flags.bool("force")) {
        const warning = all ? "WARNING! This will remove all build cache." : "WARNING! This will remove all dangling build cache.";
        if (!(await confirm(`${warning}\nAre you sure you want to continue?`))) return;
      }
      const reply = await ctx.client.json<{ CachesDeleted?: string[] | null; SpaceReclaimed?: number }>("POST", "/build/prune", {
        query: { all: all || undefined, filters: filtersParam(ctx.flags.list("filter")), "keep-storage": keepStorage },
      });
      const deleted = reply?.CachesDeleted ?? [];
      if (deleted.length) out(`Deleted build cache objects:\n${deleted.map((id) => `${id}\n`).join("")}\n`);
      out(`Total reclaimed space: ${humanSize(reply?.SpaceReclaimed ?? 0)}\n`);
    },
  },
  login: {
    spec: {
      usage: "login [OPTIONS] [SERVER]",
      description: "Log in to a registry (Docker Hub when no server is given)",
      maxArgs: 1,
      flags: [
        { name: "username", short: "u", kind: "string", description: "Username" },
        { name: "password", short: "p", kind: "string", description: "Password" },
        { name: "password-stdin", kind: "bool", description: "Take the password from stdin" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const server = registryKey(ctx.args[0]);
      let password = f.string("password");
      if (f.bool("password-stdin")) {
        if (password !== undefined) throw new CliError("--password and --password-stdin are mutually exclusive");
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        password = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
      }
      const username = f.string("username");
      if (!username || password === undefined) {
        throw new CliError("Error: Cannot perform an interactive login without --username and --password (or --password-stdin)");
      }
      if (f.string("password") !== undefined) err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n");
      const reply = await ctx.client.json<{ Status?: string; IdentityToken?: string }>("POST", "/auth", {
        body: { username, password, serveraddress: server },
      });
      const dir = configDir(ctx.globals.config);
      const config = readConfig(dir);
      config.auths = { ...config.auths, [server]: reply?.IdentityToken ? { identitytoken: reply.IdentityToken } : { auth: Buffer.from(`${username}:${password}`).toString("base64") } };
      writeConfig(dir, config);
      out(`${reply?.Status || "Login Succeeded"}\n`);
    },
  },
  logout: {
    spec: { usage: "logout [SERVER]", description: "Log out from a registry", maxArgs: 1, flags: [] },
    async run(ctx) {
      const server = registryKey(ctx.args[0]);
      const dir = configDir(ctx.globals.config);
      const config = readConfig(dir);
      if (!config.auths?.[server]) {
        out(`Not logged in to ${server === dockerHubServer ? "Docker Hub" : server}\n`);
        return;
      }
      delete config.auths[server];
      out(`Removing login credentials for ${server}\n`);
      writeConfig(dir, config);
    },
  },
};


