// berthctl images check, as ctr's: for each image, whether the manifest for this
// platform and every blob it names (config, layers) are in the content store, their
// sizes, and whether the image's top snapshot (its chain id) exists in the snapshotter.
import type { Command } from "commander";
import { Option } from "commander";
import { ImagesDefinition, type Image } from "../../core/gen/containerd/services/images/v1/images.ts";
import { blobInfo } from "../../core/content-client.ts";
import { chainId } from "../../core/image/chain-id.ts";
import type { Descriptor } from "../../core/image/manifest.ts";
import { defaultPlatformMatcher, type PlatformMatcher } from "../../core/image/platform.ts";
import { resolveImage, resolveManifest } from "../../core/image/resolve.ts";
import { callOptions, withDocumentCache, type ImageServices } from "../../core/image/services.ts";
import { isNotFound } from "../../core/grpc-status.ts";
import { CommandError, logError, messageOf, writeOut } from "./output.ts";
import type { Session } from "./session.ts";
import { Table } from "./tabwriter.ts";
import { binarySize } from "./units.ts";

/** What a missing document looks like: the store's NOT_FOUND, or no manifest for the platform. */
function missingDocument(err: unknown): boolean {
  return isNotFound(err) || (err instanceof Error && err.name === "NoMatchingManifestError");
}

export interface ContentCheck {
  /** False when the manifest itself could not be found: `required` is then unknown. */
  available: boolean;
  required: Descriptor[];
  present: Descriptor[];
  missing: Descriptor[];
}

/** containerd's images.Check: the platform's manifest, then each of its config and layers. */
export async function checkContent(svc: ImageServices, target: Descriptor, matcher: PlatformMatcher): Promise<ContentCheck> {
  let manifest;
  try {
    ({ manifest } = await resolveManifest(svc, target, matcher));
  } catch (err) {
    if (missingDocument(err)) return { available: false, required: [target], present: [], missing: [target] };
    throw err;
  }
  const required = [manifest.config, ...manifest.layers];
  const found = await Promise.all(required.map((desc) => blobInfo(svc.content, desc.digest, callOptions(svc))));
  return {
    available: true,
    required,
    present: required.filter((_, i) => found[i]),
    missing: required.filter((_, i) => !found[i]),
  };
}

/** image.IsUnpacked: the snapshot named by the chain id of the config's diff ids exists. */
export async function isUnpacked(svc: ImageServices, target: Descriptor, matcher: PlatformMatcher, snapshotter: string): Promise<boolean> {
  const { config } = await resolveImage(svc, target, matcher);
  const key = chainId(config.diffIds);
  try {
    await svc.snapshots.stat({ snapshotter, key }, callOptions(svc));
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

const sum = (descs: Descriptor[]) => descs.reduce((n, d) => n + d.size, 0);

interface CheckFlags {
  quiet?: boolean;
  snapshotter: string;
}

async function checkImages(session: Session, filters: string[], flags: CheckFlags): Promise<void> {
  let images: Image[];
  try {
    ({ images } = await session.client(ImagesDefinition).list({ filters }, session.call()));
  } catch (err) {
    throw new CommandError(`failed listing images: ${messageOf(err)}`);
  }
  if (images.length === 0) return;
  const svc = withDocumentCache(session.imageServices());
  const matcher = defaultPlatformMatcher();
  // Loaded here: the unpack module brings grpc-js, which other commands need not load.
  const { resolveSnapshotter } = await import("../../core/image/unpack.ts");
  const snapshotter = await resolveSnapshotter(svc, flags.snapshotter);
  const table = new Table().line("REF\tTYPE\tDIGEST\tSTATUS\tSIZE\tUNPACKED\t");
  const ready: string[] = [];
  let firstError: CommandError | undefined;
  for (const image of images) {
    const t = image.target;
    const target: Descriptor = { mediaType: t?.mediaType ?? "", digest: t?.digest ?? "", size: Number(t?.size ?? 0n) };
    let status: string;
    let size: string;
    let complete = true;
    try {
      const check = await checkContent(svc, target, matcher);
      status = check.missing.length > 0 ? "incomplete" : "complete";
      complete = check.missing.length === 0;
      if (check.available) {
        status += ` (${check.present.length}/${check.required.length})`;
        size = `${binarySize(sum(check.present))}/${binarySize(sum(check.required))}`;
      } else {
        status = `unavailable (${check.present.length}/?)`;
        size = `${binarySize(sum(check.present))}/?`;
      }
    } catch (err) {
      firstError ??= new CommandError(`unable to check ${image.name}: ${messageOf(err)}`);
      logError(`unable to check ${image.name}`, err);
      status = "error";
      size = "-";
      complete = false;
    }
    let unpacked = false;
    try {
      unpacked = await isUnpacked(svc, target, matcher, snapshotter);
    } catch (err) {
      firstError ??= new CommandError(`unable to check unpack for ${image.name}: ${messageOf(err)}`);
      logError(`unable to check unpack for ${image.name}`, err);
    }
    if (complete) ready.push(image.name);
    table.line(`${image.name}\t${target.mediaType}\t${target.digest}\t${status}\t${size}\t${unpacked}`);
  }
  await writeOut(flags.quiet ? ready.map((name) => `${name}\n`).join("") : table.toString());
  // As ctr: the whole listing first, then the first failure as the command's.
  if (firstError) throw firstError;
}

export function registerImagesCheck(program: Command, session: (cmd: Command) => Session): void {
  const images = program.commands.find((c) => c.name() === "images");
  if (!images) throw new Error("images check: the images command is registered first");
  images
    .command("check")
    .description("check existing images to ensure all content is available locally")
    .option("-q, --quiet", "print only the ready image refs (fully downloaded and unpacked)")
    .addOption(new Option("--snapshotter <name>", "snapshotter name. Empty value stands for the default value.").env("CONTAINERD_SNAPSHOTTER").default(""))
    .argument("[filters...]")
    .action(async (filters: string[], flags: CheckFlags, cmd: Command) => {
      await checkImages(session(cmd), filters, flags);
    });
}
