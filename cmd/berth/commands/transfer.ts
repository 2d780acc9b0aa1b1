// berth pull and push: the engine does the transfer (POST /images/create,
// /images/{name}/push) and streams progress, drawn here as docker draws it.
import type { CommandModule } from "../command.ts";
import { out } from "../command.ts";
import { configDir, registryAuthHeader } from "../auth.ts";
import { MessageRenderer } from "../progress.ts";
import { splitReference } from "../reference.ts";
import type { EngineClient } from "../client.ts";

/** Pulls `ref` with progress on stdout (or `to`); used by run/create for a missing image too. */
export async function pullImage(client: EngineClient, ref: string, config: string | undefined, to: NodeJS.WriteStream = process.stdout, quiet = false): Promise<void> {
  const { repository, tag } = splitReference(ref);
  const res = await client.request("POST", "/images/create", {
    query: { fromImage: repository, tag: tag || "latest" },
    headers: { "X-Registry-Auth": registryAuthHeader(configDir(config), ref) },
  });
  await new MessageRenderer(to, quiet).consume(res.body);
}

export const commands: CommandModule = {
  pull: {
    spec: {
      usage: "pull [OPTIONS] NAME[:TAG|@DIGEST]",
      description: "Download an image from a registry",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "quiet", short: "q", kind: "bool", description: "Suppress verbose output" },
        { name: "platform", kind: "string", description: "Set platform if server is multi-platform capable" },
        { name: "all-tags", short: "a", kind: "bool", description: "Download all tagged images in the repository (not supported)" },
      ],
    },
    async run(ctx) {
      const ref = ctx.args[0]!;
      const { tag } = splitReference(ref);
      if (!tag && !ctx.flags.bool("quiet")) out("Using default tag: latest\n");
      await pullImage(ctx.client, ref, ctx.globals.config, process.stdout, ctx.flags.bool("quiet"));
      if (ctx.flags.bool("quiet")) out(`${tag ? ref : `${ref}:latest`}\n`);
    },
  },
  push: {
    spec: {
      usage: "push [OPTIONS] NAME[:TAG]",
      description: "Upload an image to a registry",
      minArgs: 1,
      maxArgs: 1,
      flags: [{ name: "quiet", short: "q", kind: "bool", description: "Suppress verbose output" }],
    },
    async run(ctx) {
      const ref = ctx.args[0]!;
      const { repository, tag } = splitReference(ref);
      if (!tag) out("Using default tag: latest\n");
      const res = await ctx.client.request("POST", `/images/${repository}/push`, {
        query: { tag: tag || "latest" },
        headers: { "X-Registry-Auth": registryAuthHeader(configDir(ctx.globals.config), ref) },
      });
      await new MessageRenderer(process.stdout, ctx.flags.bool("quiet")).consume(res.body);
      if (ctx.flags.bool("quiet")) out(`${tag ? ref : `${ref}:latest`}\n`);
    },
  },
};
