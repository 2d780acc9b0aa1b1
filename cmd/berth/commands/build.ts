// berth build: the context directory packed as a tar (what .dockerignore keeps; the
// Dockerfile and .dockerignore always go), posted to the classic /build, its stream shown.
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { Readable } from "node:stream";
import dockerignore from "@balena/dockerignore";
import { packTar, type PackEntry } from "../../../core/tar/writer.ts";
import type { CommandModule } from "../command.ts";
import { CliError } from "../errors.ts";
import { MessageRenderer } from "../progress.ts";

// A CommonJS module whose types declare an ES default export: at run time the import is the factory itself.
const ignore = dockerignore as unknown as typeof dockerignore.default;

function* contextEntries(dir: string, dockerfile: string): Generator<PackEntry> {
  const ignoreFile = join(dir, ".dockerignore");
  const rules = ignore().add(existsSync(ignoreFile) ? readFileSync(ignoreFile, "utf8").split(/\r?\n/).filter((l) => l.trim() && !l.trimStart().startsWith("#")) : []);
  const always = new Set([".dockerignore", dockerfile]);
  function* walk(rel: string): Generator<PackEntry> {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const host = join(dir, path);
      const st = lstatSync(host);
      const ignored = !always.has(path) && rules.ignores(path);
      if (st.isDirectory()) {
        if (!ignored) yield { header: { name: `${path}/`, type: "directory", mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) } };
        // An ignored directory may hold re-included (!) paths.
        yield* walk(path);
      } else if (ignored) {
        continue;
      } else if (st.isSymbolicLink()) {
        yield { header: { name: path, type: "symlink", mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000), linkname: readlinkSync(host) } };
      } else if (st.isFile()) {
        yield { header: { name: path, type: "file", mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, mtime: Math.floor(st.mtimeMs / 1000) }, body: () => createReadStream(host) };
      }
    }
  }
  yield* walk("");
}

export const commands: CommandModule = {
  build: {
    spec: {
      usage: "build [OPTIONS] PATH",
      description: "Build an image from a Dockerfile",
      minArgs: 1,
      maxArgs: 1,
      flags: [
        { name: "tag", short: "t", kind: "list", description: "Name and optionally a tag in the \"name:tag\" format" },
        { name: "file", short: "f", kind: "string", description: "Name of the Dockerfile (default: \"PATH/Dockerfile\")" },
        { name: "build-arg", kind: "list", description: "Set build-time variables" },
        { name: "target", kind: "string", description: "Set the target build stage to build" },
        { name: "no-cache", kind: "bool", description: "Do not use cache when building the image" },
        { name: "label", kind: "list", description: "Set metadata for an image" },
        { name: "quiet", short: "q", kind: "bool", description: "Suppress the build output and print image ID on success" },
        { name: "network", kind: "string", description: "Set the networking mode for the RUN instructions during build (default \"default\")" },
      ],
    },
    async run(ctx) {
      const dir = resolve(ctx.args[0]!);
      if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CliError(`unable to prepare context: path "${ctx.args[0]}" not found`);
      const file = ctx.flags.string("file");
      const dockerfile = file ? relative(dir, resolve(file)) : "Dockerfile";
      if (dockerfile.startsWith("..")) throw new CliError(`the Dockerfile (${file}) must be within the build context (${ctx.args[0]})`);
      if (!existsSync(join(dir, dockerfile))) throw new CliError(`unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat ${join(dir, dockerfile)}: no such file or directory`);
      const pairs = (flag: string) => Object.fromEntries(ctx.flags.list(flag).map((entry) => {
        const eq = entry.indexOf("=");
        // As docker: `--build-arg NAME` takes the value from the environment.
        return eq < 0 ? [entry, process.env[entry] ?? null] : [entry.slice(0, eq), entry.slice(eq + 1)];
      }));
      const quiet = ctx.flags.bool("quiet");
      const res = await ctx.client.request("POST", "/build", {
        query: {
          t: ctx.flags.list("tag"),
          dockerfile,
          buildargs: JSON.stringify(pairs("build-arg")),
          labels: JSON.stringify(pairs("label")),
          target: ctx.flags.string("target"),
          nocache: ctx.flags.bool("no-cache") || undefined,
          q: quiet || undefined,
          networkmode: ctx.flags.string("network") || undefined,
          rm: true,
        },
        body: Readable.from(packTar(contextEntries(dir, dockerfile))),
        headers: { "Content-Type": "application/x-tar" },
      });
      const renderer = new MessageRenderer(process.stdout, false);
      await renderer.consume(res.body);
    },
  },
};
