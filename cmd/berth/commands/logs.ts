// berth logs: the container is inspected first (a TTY container's log is raw bytes,
// others are framed), then its log is read by full id, followed when -f is given.
import type { CommandModule } from "../command.ts";
import { CliError } from "../errors.ts";
import { Demuxer } from "../streams.ts";
import { parseTimeFlag } from "../times.ts";

export const commands: CommandModule = {
  logs: {
    spec: {
      usage: "logs [OPTIONS] CONTAINER",
      description: "Fetch the logs of a container",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "details", kind: "bool", description: "Show extra details provided to logs" },
        { name: "follow", short: "f", kind: "bool", description: "Follow log output" },
        { name: "since", kind: "string", description: "Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)" },
        { name: "tail", short: "n", kind: "string", description: 'Number of lines to show from the end of the logs (default "all")', default: "all" },
        { name: "timestamps", short: "t", kind: "bool", description: "Show timestamps" },
        { name: "until", kind: "string", description: "Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const tail = f.string("tail") ?? "all";
      if (tail !== "all" && !/^-?\d+$/.test(tail)) throw new CliError(`invalid value for "--tail": "${tail}" is not a number or "all"`, 125);
      const info = await ctx.client.json<{ Id: string; Config?: { Tty?: boolean } }>("GET", `/containers/${encodeURIComponent(ctx.args[0]!)}/json`);
      const now = Date.now();
      const res = await ctx.client.request("GET", `/containers/${info.Id}/logs`, {
        query: {
          stdout: true,
          stderr: true,
          follow: f.bool("follow"),
          tail,
          since: parseTimeFlag(f.string("since"), "since", now),
          until: parseTimeFlag(f.string("until"), "until", now),
          timestamps: f.bool("timestamps"),
          details: f.bool("details"),
        },
      });
      const demux = info.Config?.Tty ? undefined : new Demuxer(process.stdout, process.stderr);
      for await (const chunk of res.body) {
        if (demux) demux.push(chunk as Buffer);
        else process.stdout.write(chunk as Buffer);
      }
    },
  },
};
