// berthctl images import / export / unpack / mount / unmount — as ctr's, on top
// of the image library in core/image, which is loaded only when one of these commands
// runs (every berthctl start would otherwise pay for initialising it and tar-stream).
import { createWriteStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import type { Command } from "commander";
import { Option } from "commander";
import type { ImageServices } from "../../core/image/index.ts";
import { defaultPlatformMatcher, onlyPlatformStrict, parsePlatform } from "../../core/image/platform.ts";
import { CommandError, writeOut } from "./output.ts";
import type { Session } from "./session.ts";

const imageLibrary = () => import("../../core/image/index.ts");

/** These commands stream blobs both ways: grpc-js clients, through the session so that it closes them. */
async function servicesOf(session: Session): Promise<ImageServices> {
  await session.loadGrpcJs();
  return (await imageLibrary()).connectImageServices(session.address, session.namespace, session.signal);
}

const snapshotterOption = () =>
  new Option("--snapshotter <name>", "snapshotter name. Empty value stands for the default value.").env("CONTAINERD_SNAPSHOTTER").default("");

/** Opens the input first so a bad path fails like ctr's os.Open, before any RPC. */
async function inputStream(path: string): Promise<AsyncIterable<Buffer | string>> {
  if (path === "-") return process.stdin;
  try {
    const handle = await open(path, "r");
    return handle.createReadStream();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CommandError(`open ${path}: ${e.code === "ENOENT" ? "no such file or directory" : e.message}`);
  }
}

interface ImportFlags {
  baseName: string;
  digests?: boolean;
  skipDigestForNamed?: boolean;
  indexName?: string;
  allPlatforms?: boolean;
  platform?: string;
  unpack: boolean;
  snapshotter: string;
}

interface ExportFlags {
  skipManifestJson?: boolean;
  platform: string[];
  allPlatforms?: boolean;
}

/** Writes to a temp file beside `out` and renames it into place only when complete. */
async function exportToFile(svc: ImageServices, out: string, names: string[], flags: ExportFlags): Promise<void> {
  const temp = join(dirname(out), `.${basename(out)}.${randomBytes(4).toString("hex")}.tmp`);
  const file = createWriteStream(temp, { flags: "wx", mode: 0o644 });
  await once(file, "open");
  try {
    await (await imageLibrary()).exportImages(svc, file, names, exportOptions(flags));
    file.end();
    await once(file, "finish");
    await rename(temp, out);
  } catch (err) {
    file.destroy();
    await rm(temp, { force: true });
    throw err;
  }
}

function exportOptions(flags: ExportFlags) {
  return { platforms: flags.platform, allPlatforms: Boolean(flags.allPlatforms), format: flags.skipManifestJson ? ("oci" as const) : ("docker" as const) };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerImagesArchive(program: Command, session: (cmd: Command) => Session): void {
  const images = program.commands.find((c) => c.name() === "images") ?? program.command("images").aliases(["image", "i"]).description("manage images");

  images
    .command("import")
    .description("import images (OCI image layout or Docker archive, from a file or - for stdin)")
    .option("--base-name <name>", "base image name for added images, when provided only images with this name prefix are imported", "")
    .option("--digests", "whether to create digest images (default: false)")
    .option("--skip-digest-for-named", "skip applying --digests option to images named in the importing tar (use it in conjunction with --digests)")
    .option("--index-name <name>", "image name to keep index as, by default index is discarded")
    .option("--all-platforms", "imports content for all platforms, false by default")
    .option("--platform <platform>", "imports content for specific platform")
    .option("--no-unpack", "skip unpacking the images, false by default")
    .addOption(snapshotterOption())
    .argument("[in]")
    .action(async (input: string | undefined, flags: ImportFlags, cmd: Command) => {
      if (!input) throw new CommandError("please provide an input file or - for stdin");
      if (flags.skipDigestForNamed && !flags.digests) throw new CommandError("--skip-digest-for-named must be specified with --digests option");
      if (flags.platform) parsePlatform(flags.platform);
      const svc = await servicesOf(session(cmd));
      const stream = await inputStream(input);
      await (await imageLibrary()).importArchive(svc, stream, {
        ...(flags.platform ? { platform: flags.platform } : {}),
        allPlatforms: Boolean(flags.allPlatforms),
        ...(flags.baseName ? { namePrefix: flags.baseName } : {}),
        digests: Boolean(flags.digests),
        skipDigestForNamed: Boolean(flags.skipDigestForNamed),
        ...(flags.indexName ? { indexName: flags.indexName } : {}),
        unpack: flags.unpack,
        snapshotter: flags.snapshotter,
        onProgress: (event) => {
          if (event.type === "unpack-start") process.stdout.write(`unpacking ${event.image.name} (${event.image.target.digest})...`);
          else process.stdout.write("done\n");
        },
      });
    });

  images
    .command("export")
    .description("export images to an OCI tar archive (with a Docker manifest.json for the platform)")
    .option("--skip-manifest-json", "do not add Docker compatible manifest.json to archive")
    .option("--platform <platform>", "export content from a specific platform (repeatable)", collect, [] as string[])
    .option("--all-platforms", "exports content from all platforms")
    .argument("[out]")
    .argument("[images...]")
    .action(async (out: string | undefined, names: string[], flags: ExportFlags, cmd: Command) => {
      if (!out || names.length === 0) throw new CommandError("please provide both an output filename and an image reference to export");
      for (const p of flags.platform) {
        try {
          parsePlatform(p);
        } catch (err) {
          throw new CommandError(`invalid platform "${p}": ${(err as Error).message}`);
        }
      }
      const svc = await servicesOf(session(cmd));
      if (out === "-") {
        await (await imageLibrary()).exportImages(svc, process.stdout, names, exportOptions(flags));
        return;
      }
      await exportToFile(svc, out, names, flags);
    });

  images
    .command("unpack")
    .description("unpack an image into snapshots (reusing layers already unpacked)")
    .option("--platform <platform>", "unpack the image for this platform (default: this host)")
    .addOption(snapshotterOption())
    .argument("[ref]")
    .action(async (name: string | undefined, flags: { platform?: string; snapshotter: string }, cmd: Command) => {
      if (!name) throw new CommandError("please provide an image reference to unpack");
      const s = session(cmd);
      const svc = await servicesOf(s);
      const matcher = flags.platform ? onlyPlatformStrict(parsePlatform(flags.platform)) : defaultPlatformMatcher();
      const { image } = await svc.images.get({ name }, s.call());
      const t = image!.target!;
      await writeOut(`unpacking ${name} (${t.digest})...`);
      await (await imageLibrary()).unpackImage(svc, { mediaType: t.mediaType, digest: t.digest, size: Number(t.size), annotations: t.annotations }, { snapshotter: flags.snapshotter, platform: matcher });
      await writeOut("done\n");
    });

  images
    .command("mount")
    .description("mount an image to a target path")
    .option("--rw", "enable write support on the mount")
    .option("--platform <platform>", "mount the image for the specified platform")
    .addOption(snapshotterOption())
    .argument("[ref]")
    .argument("[target]")
    .action(async (name: string | undefined, target: string | undefined, flags: { rw?: boolean; platform?: string; snapshotter: string }, cmd: Command) => {
      if (!name) throw new CommandError("please provide an image reference to mount");
      if (!target) throw new CommandError("please provide a target path to mount to");
      const svc = await servicesOf(session(cmd));
      const result = await (await imageLibrary()).mountImage(svc, name, target, {
        ...(flags.snapshotter ? { snapshotter: flags.snapshotter } : {}),
        ...(flags.platform ? { platform: flags.platform } : {}),
        rw: Boolean(flags.rw),
      });
      await writeOut(`${result.chainId}\n${target}\n`);
    });

  images
    .command("unmount")
    .description("unmount the image from the target")
    .option("--rm", "remove the snapshot after a successful unmount")
    .addOption(snapshotterOption())
    .argument("[target]")
    .action(async (target: string | undefined, flags: { rm?: boolean; snapshotter: string }, cmd: Command) => {
      if (!target) throw new CommandError("please provide a target path to unmount from");
      const svc = await servicesOf(session(cmd));
      await (await imageLibrary()).unmountImage(svc, target, { remove: Boolean(flags.rm), ...(flags.snapshotter ? { snapshotter: flags.snapshotter } : {}) });
      await writeOut(`${target}\n`);
    });
}
