// berthctl images (image, i): ls, tag, rm, label — as ctr images.
import type { Command } from "commander";
import { ImagesDefinition, type Image } from "../../core/gen/containerd/services/images/v1/images.ts";
import { imagePlatforms, imageSize } from "../../core/image/resolve.ts";
import { withDocumentCache } from "../../core/image/services.ts";
import { withLease } from "../../core/image/lease.ts";
import { defaultPlatformMatcher, formatPlatform } from "../../core/image/platform.ts";
import type { Descriptor } from "../../core/image/manifest.ts";
import { isAlreadyExists, isNotFound } from "../../core/grpc-status.ts";
import { CommandError, logError, logWarning, messageOf, writeOut } from "./output.ts";
import { formatLabels, labelUpdate, type Session } from "./session.ts";
import { Table } from "./tabwriter.ts";
import { binarySize } from "./units.ts";

async function listImages(session: Session, filters: string[], quiet: boolean): Promise<void> {
  let images: Image[];
  try {
    ({ images } = await session.client(ImagesDefinition).list({ filters }, session.call()));
  } catch (err) {
    throw new CommandError(`failed to list images: ${messageOf(err)}`);
  }
  if (quiet) {
    await writeOut(images.map((image) => `${image.name}\n`).join(""));
    return;
  }
  // One document cache for the whole listing: images often share manifests and configs.
  const svc = withDocumentCache(session.imageServices());
  const matcher = defaultPlatformMatcher();
  const table = new Table().line("REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t");
  for (const image of images) {
    const t = image.target;
    const target: Descriptor = { mediaType: t?.mediaType ?? "", digest: t?.digest ?? "", size: Number(t?.size ?? 0n) };
    const size = await imageSize(svc, target, matcher);
    if (size.error !== undefined) logError(`failed calculating size for image ${image.name}`, size.error);
    let platformColumn = "-";
    try {
      const platforms = await imagePlatforms(svc, target);
      if (platforms.length > 0) platformColumn = [...new Set(platforms.map(formatPlatform))].sort().join(",");
    } catch (err) {
      logError(`failed resolving platform for image ${image.name}`, err);
    }
    const labels = formatLabels(image.labels) || "-";
    table.line(`${image.name}\t${target.mediaType}\t${target.digest}\t${binarySize(size.size)}\t${platformColumn}\t${labels}\t`);
  }
  await writeOut(table.toString());
}

export function registerImages(program: Command, session: (cmd: Command) => Session): void {
  const images = program.command("images").aliases(["image", "i"]).description("manage images");

  images
    .command("list")
    .alias("ls")
    .description("list images known to berth")
    .option("-q, --quiet", "print only the image refs")
    .argument("[filters...]")
    .action(async (filters: string[], opts: { quiet?: boolean }, cmd: Command) => {
      await listImages(session(cmd), filters, Boolean(opts.quiet));
    });

  images
    .command("tag")
    .description("tag an image")
    .option("--force", "force target_ref to be created, regardless if it already exists")
    .argument("[source_ref]")
    .argument("[target_refs...]")
    .action(async (source: string | undefined, targets: string[], opts: { force?: boolean }, cmd: Command) => {
      if (!source) throw new CommandError("please provide an image reference to tag from");
      if (targets.length === 0) throw new CommandError("please provide an image reference to tag to");
      const s = session(cmd);
      const client = s.client(ImagesDefinition);
      // a short-lived lease like the one ctr's client.WithLease opens
      await withLease(s.imageServices(), undefined, async (lease) => {
        const { image } = await client.get({ name: source }, s.call(lease));
        for (const target of targets) {
          const tagged = { ...image, name: target };
          try {
            await client.create({ image: tagged }, s.call(lease));
          } catch (err) {
            if (!(isAlreadyExists(err) && opts.force)) throw err;
            await client.delete({ name: target }, s.call(lease));
            await client.create({ image: tagged }, s.call(lease));
          }
          await writeOut(`${target}\n`);
        }
      });
    });

  images
    .command("delete")
    .aliases(["del", "remove", "rm"])
    .description("remove one or more images by reference")
    .option("--sync", "synchronously remove image and all associated resources")
    .argument("[refs...]")
    .action(async (refs: string[], opts: { sync?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const client = s.client(ImagesDefinition);
      let firstError: CommandError | undefined;
      for (const [i, name] of refs.entries()) {
        try {
          // ctr waits for garbage collection once, after the last delete.
          await client.delete({ name, sync: Boolean(opts.sync) && i === refs.length - 1 }, s.call());
        } catch (err) {
          if (isNotFound(err)) {
            logWarning(`${name}: image not found`);
          } else {
            firstError ??= new CommandError(`unable to delete ${name}: ${messageOf(err)}`);
            logError(`unable to delete ${name}`, err);
          }
          continue;
        }
        await writeOut(`${name}\n`);
      }
      if (firstError) throw firstError;
    });

  images
    .command("label")
    .description("set and clear labels for an image")
    .option("-r, --replace-all", "replace all labels")
    .argument("[name]")
    .argument("[labels...]", "<key>=<value> (an empty value clears the label)")
    .action(async (name: string | undefined, args: string[], opts: { replaceAll?: boolean }, cmd: Command) => {
      if (!name) throw new CommandError("please specify an image");
      const s = session(cmd);
      const client = s.client(ImagesDefinition);
      const { labels, paths: keys } = labelUpdate(args);
      const paths = opts.replaceAll ? ["labels"] : keys;
      // No labels given: show the current ones rather than send an empty mask
      // (which would mean "replace everything").
      const { image } =
        paths.length === 0
          ? await client.get({ name }, s.call())
          : await client.update({ image: { name, labels }, updateMask: paths }, s.call());
      await writeOut(`${formatLabels(image?.labels ?? {})}\n`);
    });
}
