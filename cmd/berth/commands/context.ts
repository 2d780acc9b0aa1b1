// berth context: named engine hosts in ~/.berth/contexts.json, one of them current.
import type { CommandModule } from "../command.ts";
import { out } from "../command.ts";
import { CliError } from "../errors.ts";
import { defaultHost, parseHost, readContexts, writeContexts } from "../host.ts";
import { printList } from "../output.ts";

const validName = /^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$/;

function currentName(): string {
  return process.env.BERTH_CONTEXT || readContexts().current || "default";
}

export const commands: CommandModule = {
  "context create": {
    spec: {
      usage: "context create [OPTIONS] CONTEXT",
      description: "Create a context",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "host", kind: "string", description: "The engine's address (unix:///path or tcp://host:port)" },
        { name: "description", kind: "string", description: "Description of the context" },
      ],
    },
    async run(ctx) {
      const name = ctx.args[0]!;
      if (!validName.test(name) || name === "default") throw new CliError(`invalid context name "${name}": use letters, digits and _.+- (and not "default")`);
      const host = ctx.flags.string("host");
      if (!host) throw new CliError("berth context create needs --host (unix:///path or tcp://host:port)");
      parseHost(host);
      const file = readContexts();
      if (file.contexts[name]) throw new CliError(`context "${name}" already exists`);
      file.contexts[name] = { host, description: ctx.flags.string("description") ?? "" };
      writeContexts(file);
      out(`${name}\nSuccessfully created context "${name}"\n`);
    },
  },
  "context ls": {
    spec: {
      usage: "context ls [OPTIONS]",
      description: "List contexts",
      maxArgs: 0,
      flags: [
        { name: "format", kind: "string", description: "Format output using a custom template" },
        { name: "quiet", short: "q", kind: "bool", description: "Only show context names" },
      ],
    },
    async run(ctx) {
      const file = readContexts();
      const current = currentName();
      const rows = [{ Name: "default", Description: "The local Berth daemon", DockerEndpoint: defaultHost, Current: current === "default" }];
      for (const [name, entry] of Object.entries(file.contexts).sort(([a], [b]) => a.localeCompare(b))) {
        rows.push({ Name: name, Description: entry.description ?? "", DockerEndpoint: entry.host, Current: current === name });
      }
      if (ctx.flags.bool("quiet")) {
        out(rows.map((r) => `${r.Name}\n`).join(""));
        return;
      }
      printList(
        rows.map((r) => ({ ...r, Name: ctx.flags.string("format") ? r.Name : `${r.Name}${r.Current ? " *" : ""}` })),
        ctx.flags.string("format"),
        "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}",
        { Name: "NAME", Description: "DESCRIPTION", DockerEndpoint: "DOCKER ENDPOINT", Current: "CURRENT" },
      );
    },
  },
  "context use": {
    spec: { usage: "context use CONTEXT", description: "Set the current context", minArgs: 1, maxArgs: 1, flags: [] },
    async run(ctx) {
      const name = ctx.args[0]!;
      const file = readContexts();
      if (name !== "default" && !file.contexts[name]) throw new CliError(`context "${name}" does not exist (berth context ls lists them)`);
      if (name === "default") delete file.current;
      else file.current = name;
      writeContexts(file);
      out(`${name}\nCurrent context is now "${name}"\n`);
    },
  },
  "context rm": {
    spec: { usage: "context rm CONTEXT [CONTEXT...]", description: "Remove one or more contexts", minArgs: 1, flags: [{ name: "force", short: "f", kind: "bool", description: "Remove the current context too" }] },
    async run(ctx) {
      const file = readContexts();
      for (const name of ctx.args) {
        if (name === "default") throw new CliError('context "default" cannot be removed');
        if (!file.contexts[name]) throw new CliError(`context "${name}" does not exist`);
        if (file.current === name && !ctx.flags.bool("force")) throw new CliError(`context "${name}" is in use, set a different context (berth context use) or use --force`);
      }
      for (const name of ctx.args) {
        delete file.contexts[name];
        if (file.current === name) delete file.current;
      }
      writeContexts(file);
      out(ctx.args.map((n) => `${n}\n`).join(""));
    },
  },
  "context inspect": {
    spec: { usage: "context inspect [CONTEXT...]", description: "Show contexts as JSON", flags: [] },
    async run(ctx) {
      const file = readContexts();
      const names = ctx.args.length ? ctx.args : [currentName()];
      const items = names.map((name) => {
        if (name === "default") return { Name: "default", Description: "The local Berth daemon", Host: defaultHost };
        const entry = file.contexts[name];
        if (!entry) throw new CliError(`context "${name}" does not exist`);
        return { Name: name, Description: entry.description ?? "", Host: entry.host };
      });
      out(`${JSON.stringify(items, null, 4)}\n`);
    },
  },
  "context show": {
    spec: { usage: "context show", description: "Print the name of the current context (from ~/.berth/contexts.json)", maxArgs: 0, flags: [] },
    async run() {
      out(`${currentName()}\n`);
    },
  },
};
