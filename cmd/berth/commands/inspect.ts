// berth inspect: the engine's JSON as it is (an array, indented like docker's), or each
// object through --format. Without --type a name is tried as a container, then an image.
import type { CommandModule } from "../command.ts";
import { err, out } from "../command.ts";
import { CliError, isNotFound } from "../errors.ts";
import type { EngineClient } from "../client.ts";
import { Template } from "../template.ts";

const kinds: Record<string, (name: string) => string> = {
  container: (name) => `/containers/${encodeURIComponent(name)}/json`,
  image: (name) => `/images/${name}/json`,
};

async function inspectOne(client: EngineClient, name: string, type: string | undefined, size: boolean): Promise<unknown> {
  const order = type ? [type] : ["container", "image"];
  for (const kind of order) {
    try {
      return await client.json("GET", kinds[kind]!(name), { query: kind === "container" && size ? { size: true } : undefined });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
  throw new CliError(`Error: No such ${type ?? "object"}: ${name}`);
}

export const commands: CommandModule = {
  inspect: {
    spec: {
      usage: "inspect [OPTIONS] NAME|ID [NAME|ID...]",
      description: "Return low-level information on Docker objects",
      minArgs: 1,
      flags: [
        { name: "format", short: "f", kind: "string", description: "Format output using a custom template" },
        { name: "size", short: "s", kind: "bool", description: "Display total file sizes if the type is container" },
        { name: "type", kind: "string", description: "Only inspect objects of the given type (container, image)" },
      ],
    },
    async run(ctx) {
      const type = ctx.flags.string("type");
      if (type !== undefined && !kinds[type]) throw new CliError(`"${type}" is not a valid value for --type (container, image)`);
      const format = ctx.flags.string("format");
      const template = format ? new Template(format === "json" ? "{{json .}}" : format) : undefined;
      const found: unknown[] = [];
      let failed = false;
      for (const name of ctx.args) {
        try {
          found.push(await inspectOne(ctx.client, name, type, ctx.flags.bool("size")));
        } catch (e) {
          if (!(e instanceof CliError)) throw e;
          failed = true;
          // Printed after the output, as docker does.
          found.push(e);
        }
      }
      const objects = found.filter((f) => !(f instanceof CliError));
      if (template) out(objects.map((o) => `${template.render(o)}\n`).join(""));
      else out(`${JSON.stringify(objects, null, 4)}\n`);
      for (const f of found) if (f instanceof CliError) err(`${f.message}\n`);
      return failed ? 1 : 0;
    },
  },
};
