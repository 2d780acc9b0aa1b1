// berth stop, kill, restart, rm, pause, unpause, rename, wait, top, stats and container
// prune: one request per container, the name printed on success, each failure on stderr
// (and exit 1 once all were tried), as docker does.
import type { Context, CommandModule } from "../command.ts";
import { err, out } from "../command.ts";
import { Table } from "../../berthctl/tabwriter.ts";
import { confirm } from "../confirm.ts";
import { CliError, isNotFound } from "../errors.ts";
import { filtersParam } from "../filters.ts";
import { binarySize, humanSize, printList, shortId } from "../output.ts";
import type { Query } from "../client.ts";

const path = (name: string, action = "") => `/containers/${encodeURIComponent(name)}${action}`;

/** Runs `each` for every argument; prints the argument after a success, the error after a failure. */
async function forEach(ctx: Context, each: (name: string) => Promise<unknown>, quietNotFound = false): Promise<number> {
  let failed = false;
  for (const name of ctx.args) {
    try {
      await each(name);
      out(`${name}\n`);
    } catch (e) {
      if (!(e instanceof CliError)) throw e;
      err(`${e.message}\n`);
      if (!(quietNotFound && isNotFound(e))) failed = true;
    }
  }
  return failed ? 1 : 0;
}

const timeFlag = { name: "time", short: "t", kind: "string" as const, value: "int", description: "Seconds to wait before killing the container" };
const signalFlag = { name: "signal", short: "s", kind: "string" as const, description: "Signal to send to the container" };

interface Stats {
  id?: string;
  name?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number; percpu_usage?: number[] }; system_cpu_usage?: number; online_cpus?: number };
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number };
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }> | null;
  blkio_stats?: { io_service_bytes_recursive?: { op: string; value: number }[] | null };
  pids_stats?: { current?: number };
}

function statsRow(s: Stats, idOrName: string) {
  const cpu = s.cpu_stats ?? {};
  const pre = s.precpu_stats ?? {};
  const cpuDelta = (cpu.cpu_usage?.total_usage ?? 0) - (pre.cpu_usage?.total_usage ?? 0);
  const sysDelta = (cpu.system_cpu_usage ?? 0) - (pre.system_cpu_usage ?? 0);
  const cpus = cpu.online_cpus || cpu.cpu_usage?.percpu_usage?.length || 1;
  const cpuPerc = sysDelta > 0 && cpuDelta > 0 ? (cpuDelta / sysDelta) * cpus * 100 : 0;
  const mem = s.memory_stats ?? {};
  const inactive = mem.stats?.total_inactive_file ?? mem.stats?.inactive_file ?? 0;
  const used = Math.max(0, (mem.usage ?? 0) - (inactive < (mem.usage ?? 0) ? inactive : 0));
  const limit = mem.limit ?? 0;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(s.networks ?? {})) {
    rx += n.rx_bytes ?? 0;
    tx += n.tx_bytes ?? 0;
  }
  let read = 0;
  let write = 0;
  for (const e of s.blkio_stats?.io_service_bytes_recursive ?? []) {
    if (e.op.toLowerCase() === "read") read += e.value;
    if (e.op.toLowerCase() === "write") write += e.value;
  }
  return {
    ID: shortId(s.id ?? idOrName),
    Container: idOrName,
    Name: (s.name ?? "").replace(/^\//, "") || "--",
    CPUPerc: `${cpuPerc.toFixed(2)}%`,
    MemUsage: `${binarySize(used)} / ${binarySize(limit)}`,
    MemPerc: `${(limit > 0 ? (used / limit) * 100 : 0).toFixed(2)}%`,
    NetIO: `${humanSize(rx, 3)} / ${humanSize(tx, 3)}`,
    BlockIO: `${humanSize(read, 3)} / ${humanSize(write, 3)}`,
    PIDs: String(s.pids_stats?.current ?? 0),
  };
}

const statsHeaders = { ID: "CONTAINER ID", Container: "CONTAINER", Name: "NAME", CPUPerc: "CPU %", MemUsage: "MEM USAGE / LIMIT", MemPerc: "MEM %", NetIO: "NET I/O", BlockIO: "BLOCK I/O", PIDs: "PIDS" };

export const commands: CommandModule = {
  stop: {
    spec: { usage: "stop [OPTIONS] CONTAINER [CONTAINER...]", description: "Stop one or more running containers", minArgs: 1, flags: [signalFlag, timeFlag] },
    run: (ctx) => forEach(ctx, (name) => ctx.client.call("POST", path(name, "/stop"), { query: { t: ctx.flags.int("time"), signal: ctx.flags.string("signal") } })),
  },
  restart: {
    spec: { usage: "restart [OPTIONS] CONTAINER [CONTAINER...]", description: "Restart one or more containers", minArgs: 1, flags: [signalFlag, timeFlag] },
    run: (ctx) => forEach(ctx, (name) => ctx.client.call("POST", path(name, "/restart"), { query: { t: ctx.flags.int("time"), signal: ctx.flags.string("signal") } })),
  },
  kill: {
    spec: { usage: "kill [OPTIONS] CONTAINER [CONTAINER...]", description: "Kill one or more running containers", minArgs: 1, flags: [signalFlag] },
    run: (ctx) => forEach(ctx, (name) => ctx.client.call("POST", path(name, "/kill"), { query: { signal: ctx.flags.string("signal") } })),
  },
  pause: {
    spec: { usage: "pause CONTAINER [CONTAINER...]", description: "Pause all processes within one or more containers", minArgs: 1, flags: [] },
    run: (ctx) => forEach(ctx, (name) => ctx.client.call("POST", path(name, "/pause"))),
  },
  unpause: {
    spec: { usage: "unpause CONTAINER [CONTAINER...]", description: "Unpause all processes within one or more containers", minArgs: 1, flags: [] },
    run: (ctx) => forEach(ctx, (name) => ctx.client.call("POST", path(name, "/unpause"))),
  },
  rm: {
    spec: {
      usage: "rm [OPTIONS] CONTAINER [CONTAINER...]",
      description: "Remove one or more containers",
      minArgs: 1,
      flags: [
        { name: "force", short: "f", kind: "bool", description: "Force the removal of a running container (uses SIGKILL)" },
        { name: "link", short: "l", kind: "bool", description: "Remove the specified link" },
        { name: "volumes", short: "v", kind: "bool", description: "Remove anonymous volumes associated with the container" },
      ],
    },
    run: (ctx) => {
      const query: Query = { force: ctx.flags.bool("force"), v: ctx.flags.bool("volumes"), link: ctx.flags.bool("link") };
      // rm -f of a container that is not there reports it but does not fail (docker's rule).
      return forEach(ctx, (name) => ctx.client.call("DELETE", path(name), { query }), ctx.flags.bool("force"));
    },
  },
  rename: {
    spec: { usage: "rename CONTAINER NEW_NAME", description: "Rename a container", minArgs: 2, maxArgs: 2, flags: [] },
    async run(ctx) {
      await ctx.client.call("POST", path(ctx.args[0]!, "/rename"), { query: { name: ctx.args[1] } });
    },
  },
  wait: {
    spec: { usage: "wait CONTAINER [CONTAINER...]", description: "Block until one or more containers stop, then print their exit codes", minArgs: 1, flags: [] },
    async run(ctx) {
      let failed = false;
      for (const name of ctx.args) {
        try {
          const reply = await ctx.client.json<{ StatusCode: number; Error?: { Message?: string } | null }>("POST", path(name, "/wait"));
          if (reply.Error?.Message) throw new CliError(reply.Error.Message);
          out(`${reply.StatusCode}\n`);
        } catch (e) {
          if (!(e instanceof CliError)) throw e;
          err(`${e.message}\n`);
          failed = true;
        }
      }
      return failed ? 1 : 0;
    },
  },
  top: {
    spec: { usage: "top CONTAINER [ps OPTIONS]", description: "Display the running processes of a container", minArgs: 1, stopAtFirstArg: true, flags: [] },
    async run(ctx) {
      const [name, ...psArgs] = ctx.args;
      const reply = await ctx.client.json<{ Titles: string[]; Processes: string[][] | null }>("GET", path(name!, "/top"), { query: { ps_args: psArgs.length ? psArgs.join(" ") : undefined } });
      // docker top's own writer: minimum column width 20.
      const table = new Table(" ", { minWidth: 20, padding: 3 });
      table.line(reply.Titles.join("\t"));
      for (const p of reply.Processes ?? []) table.line(p.join("\t"));
      out(table.toString());
    },
  },
  stats: {
    spec: {
      usage: "stats [OPTIONS] [CONTAINER...]",
      description: "Display a live stream of container(s) resource usage statistics",
      flags: [
        { name: "all", short: "a", kind: "bool", description: "Show all containers (default shows just running)" },
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "no-stream", kind: "bool", description: "Disable streaming stats and only pull the first result" },
        { name: "no-trunc", kind: "bool", description: "Do not truncate output" },
      ],
    },
    async run(ctx) {
      const named = ctx.args.length > 0;
      const targets = async () =>
        named ? ctx.args : (await ctx.client.json<{ Id: string }[]>("GET", "/containers/json", { query: { all: ctx.flags.bool("all") || undefined } })).map((c) => shortId(c.Id));
      const format = ctx.flags.string("format");
      const table = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
      const once = async () => {
        const rows = [];
        let failed = false;
        for (const id of await targets()) {
          try {
            rows.push(statsRow(await ctx.client.json<Stats>("GET", path(id, "/stats"), { query: { stream: "0" } }), id));
          } catch (e) {
            if (!(e instanceof CliError) || !named) throw e;
            err(`${e.message}\n`);
            failed = true;
          }
        }
        return { rows, failed };
      };
      if (ctx.flags.bool("no-stream")) {
        const { rows, failed } = await once();
        printList(rows, format, table, statsHeaders);
        return failed ? 1 : 0;
      }
      for (;;) {
        const { rows } = await once();
        if (process.stdout.isTTY) out("\x1b[2J\x1b[H");
        printList(rows, format, table, statsHeaders);
        await new Promise((r) => setTimeout(r, 500));
      }
    },
  },
  "container prune": {
    spec: {
      usage: "container prune [OPTIONS]",
      description: "Remove all stopped containers",
      maxArgs: 0,
      flags: [
        { name: "filter", kind: "list", value: "filter", description: "Provide filter values (e.g. \"until=<timestamp>\")" },
        { name: "force", short: "f", kind: "bool", description: "Do not prompt for confirmation" },
      ],
    },
    async run(ctx) {
      if (!ctx.flags.bool("force") && !(await confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue?"))) return;
      const reply = await ctx.client.json<{ ContainersDeleted?: string[] | null; SpaceReclaimed?: number }>("POST", "/containers/prune", { query: { filters: filtersParam(ctx.flags.list("filter")) } });
      const deleted = reply?.ContainersDeleted ?? [];
      if (deleted.length) out(`Deleted Containers:\n${deleted.map((id) => `${id}\n`).join("")}\n`);
      out(`Total reclaimed space: ${humanSize(reply?.SpaceReclaimed ?? 0)}\n`);
    },
  },
};
