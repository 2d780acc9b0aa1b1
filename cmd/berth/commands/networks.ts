// berth network create, ls, inspect, connect, disconnect, rm and prune: docker's flags,
// its table (sorted by name the way docker sorts), its prune wording.
import type { Context, CommandModule } from "../command.ts";
import { err, out } from "../command.ts";
import { confirm } from "../confirm.ts";
import { CliError, isNotFound } from "../errors.ts";
import { filtersParam } from "../filters.ts";
import { goTime, printList, shortId } from "../output.ts";
import { byName, keyValues, labelText, printInspected } from "./object-lists.ts";

interface NetworkSummary {
  Id: string;
  Name: string;
  Driver: string;
  Scope: string;
  Created?: string;
  EnableIPv6?: boolean;
  Internal?: boolean;
  Labels?: Record<string, string> | null;
}

const networkHeaders = { ID: "NETWORK ID", Name: "NAME", Driver: "DRIVER", Scope: "SCOPE", IPv6: "IPV6", Internal: "INTERNAL", Labels: "LABELS", CreatedAt: "CREATED" };

function networkRows(networks: NetworkSummary[], trunc: boolean) {
  return [...networks]
    .sort(byName)
    .map((n) => ({
      ID: trunc ? shortId(n.Id) : n.Id,
      Name: n.Name,
      Driver: n.Driver,
      Scope: n.Scope,
      IPv6: String(Boolean(n.EnableIPv6)),
      Internal: String(Boolean(n.Internal)),
      Labels: labelText(n.Labels),
      CreatedAt: n.Created ? goTime(new Date(n.Created)) : "",
    }));
}

const networkPath = (name: string, action = "") => `/networks/${encodeURIComponent(name)}${action}`;

/** One IPAM pool from --subnet/--gateway/--ip-range, which docker pairs up in order. */
function ipamConfig(ctx: Context): { Subnet: string; Gateway?: string; IPRange?: string }[] {
  const subnets = ctx.flags.list("subnet");
  const gateways = ctx.flags.list("gateway");
  const ranges = ctx.flags.list("ip-range");
  if (gateways.length > subnets.length) throw new CliError("every --gateway needs a --subnet to belong to");
  if (ranges.length > subnets.length) throw new CliError("every --ip-range needs a --subnet to belong to");
  return subnets.map((subnet, i) => ({ Subnet: subnet, ...(gateways[i] ? { Gateway: gateways[i] } : {}), ...(ranges[i] ? { IPRange: ranges[i] } : {}) }));
}

export const commands: CommandModule = {
  "network create": {
    spec: {
      usage: "network create [OPTIONS] NETWORK",
      description: "Create a network",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "driver", short: "d", kind: "string", description: "Driver to manage the Network", default: "bridge" },
        { name: "subnet", kind: "list", description: "Subnet in CIDR format that represents a network segment" },
        { name: "gateway", kind: "list", description: "IPv4 or IPv6 Gateway for the master subnet" },
        { name: "ip-range", kind: "list", description: "Allocate container ip from a sub-range" },
        { name: "internal", kind: "bool", description: "Restrict external access to the network" },
        { name: "attachable", kind: "bool", description: "Enable manual container attachment" },
        { name: "ipv6", kind: "bool", description: "Enable IPv6 networking" },
        { name: "label", kind: "list", description: "Set metadata on a network" },
        { name: "opt", short: "o", kind: "list", description: "Set driver specific options" },
      ],
    },
    async run(ctx) {
      const f = ctx.flags;
      const pools = ipamConfig(ctx);
      const reply = await ctx.client.json<{ Id: string }>("POST", "/networks/create", {
        body: {
          Name: ctx.args[0],
          Driver: f.string("driver") || "bridge",
          Internal: f.bool("internal"),
          Attachable: f.bool("attachable"),
          EnableIPv6: f.bool("ipv6"),
          Options: keyValues(f.list("opt"), "--opt"),
          Labels: keyValues(f.list("label"), "--label"),
          IPAM: { Driver: "default", Config: pools, Options: {} },
          CheckDuplicate: true,
        },
      });
      out(`${reply.Id}\n`);
    },
  },
  "network ls": {
    spec: {
      usage: "network ls [OPTIONS]",
      description: "List networks",
      maxArgs: 0,
      flags: [
        { name: "filter", short: "f", kind: "list", value: "filter", description: "Provide filter values (e.g. \"driver=bridge\")" },
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "no-trunc", kind: "bool", description: "Do not truncate the output" },
        { name: "quiet", short: "q", kind: "bool", description: "Only display network IDs" },
      ],
    },
    async run(ctx) {
      const networks = await ctx.client.json<NetworkSummary[]>("GET", "/networks", { query: { filters: filtersParam(ctx.flags.list("filter")) } });
      const rows = networkRows(networks ?? [], !ctx.flags.bool("no-trunc"));
      if (ctx.flags.bool("quiet")) {
        out(rows.map((r) => `${r.ID}\n`).join(""));
        return;
      }
      printList(rows, ctx.flags.string("format"), "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", networkHeaders);
    },
  },
  "network inspect": {
    spec: {
      usage: "network inspect [OPTIONS] NETWORK [NETWORK...]",
      description: "Display detailed information on one or more networks",
      minArgs: 1,
      flags: [
        { name: "format", short: "f", kind: "string", description: "Format output using a custom template" },
        { name: "verbose", short: "v", kind: "bool", description: "Verbose output for diagnostics" },
      ],
    },
    run: (ctx) => printInspected(ctx, (name) => ctx.client.json("GET", networkPath(name))),
  },
  "network connect": {
    spec: {
      usage: "network connect [OPTIONS] NETWORK CONTAINER",
      description: "Connect a container to a network",
      minArgs: 2,
      maxArgs: 2,
      flags: [
        { name: "alias", kind: "list", description: "Add network-scoped alias for the container" },
        { name: "ip", kind: "string", description: "IPv4 address (e.g., \"172.30.100.104\")" },
        { name: "ip6", kind: "string", description: "IPv6 address (e.g., \"2001:db8::33\")" },
      ],
    },
    async run(ctx) {
      const ip = ctx.flags.string("ip");
      const ip6 = ctx.flags.string("ip6");
      const aliases = ctx.flags.list("alias");
      await ctx.client.call("POST", networkPath(ctx.args[0]!, "/connect"), {
        body: {
          Container: ctx.args[1],
          EndpointConfig: {
            ...(aliases.length ? { Aliases: aliases } : {}),
            ...(ip || ip6 ? { IPAMConfig: { ...(ip ? { IPv4Address: ip } : {}), ...(ip6 ? { IPv6Address: ip6 } : {}) } } : {}),
          },
        },
      });
    },
  },
  "network disconnect": {
    spec: {
      usage: "network disconnect [OPTIONS] NETWORK CONTAINER",
      description: "Disconnect a container from a network",
      minArgs: 2,
      maxArgs: 2,
      flags: [{ name: "force", short: "f", kind: "bool", description: "Force the container to disconnect from a network" }],
    },
    async run(ctx) {
      await ctx.client.call("POST", networkPath(ctx.args[0]!, "/disconnect"), { body: { Container: ctx.args[1], Force: ctx.flags.bool("force") } });
    },
  },
  "network rm": {
    spec: {
      usage: "network rm NETWORK [NETWORK...]",
      description: "Remove one or more networks",
      minArgs: 1,
      flags: [{ name: "force", short: "f", kind: "bool", description: "Do not error if the network does not exist" }],
    },
    async run(ctx) {
      let failed = false;
      for (const name of ctx.args) {
        try {
          await ctx.client.call("DELETE", networkPath(name));
          out(`${name}\n`);
        } catch (e) {
          if (!(e instanceof CliError)) throw e;
          if (ctx.flags.bool("force") && isNotFound(e)) continue;
          err(`${e.message}\n`);
          failed = true;
        }
      }
      return failed ? 1 : 0;
    },
  },
  "network prune": {
    spec: {
      usage: "network prune [OPTIONS]",
      description: "Remove all unused networks",
      maxArgs: 0,
      flags: [
        { name: "filter", kind: "list", value: "filter", description: "Provide filter values (e.g. \"until=<timestamp>\")" },
        { name: "force", short: "f", kind: "bool", description: "Do not prompt for confirmation" },
      ],
    },
    async run(ctx) {
      const warning = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?";
      if (!ctx.flags.bool("force") && !(await confirm(warning))) return;
      const reply = await ctx.client.json<{ NetworksDeleted?: string[] | null }>("POST", "/networks/prune", { query: { filters: filtersParam(ctx.flags.list("filter")) } });
      const deleted = reply?.NetworksDeleted ?? [];
      if (deleted.length) out(`Deleted Networks:\n${deleted.map((n) => `${n}\n`).join("")}\n`);
    },
  },
};
