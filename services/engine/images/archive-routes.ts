// `docker load` and `docker save`: POST /images/load takes a docker-save (or OCI) tar and
// names its images the Docker way; GET /images/get and /images/{name}/get write one the
// CLI's `docker load` (and Docker's own) reads back: manifest.json with RepoTags, plus the
// OCI layout, each blob once.
import { ArchiveError } from "../../../core/image/archive-reader.ts";
import { exportImages, ExportError } from "../../../core/image/export.ts";
import { importArchive } from "../../../core/image/import.ts";
import { ImageFormatError } from "../../../core/image/manifest.ts";
import { ReferenceError } from "../../../core/image/reference.ts";
import type { Backend } from "../backend.ts";
import { badRequest, type RequestContext, type Router } from "../http.ts";
import { familiarRef, normalizeImageRef, splitStoreName } from "../references.ts";
import { danglingPrefix, imageCatalog } from "./catalog.ts";
import { createName, preservingReplaced } from "./tagging.ts";

/** A bad archive is the client's fault: 400 with what is wrong with it. */
function archiveFault(err: unknown): unknown {
  if (err instanceof ArchiveError || err instanceof ImageFormatError || err instanceof ReferenceError) return badRequest(err.message);
  return err;
}

async function load(backend: Backend, ctx: RequestContext): Promise<void> {
  const svc = backend.images;
  let result;
  try {
    result = await preservingReplaced(svc, "all", () => importArchive(svc, ctx.req, { digests: true, skipDigestForNamed: true }));
  } catch (err) {
    throw archiveFault(err);
  }
  const catalog = imageCatalog(backend);
  const lines: string[] = [];
  for (const image of result.images) {
    if (splitStoreName(image.name)) {
      lines.push(`Loaded image: ${familiarRef(image.name)}\n`);
      const content = await catalog.content(image.target);
      backend.events.publish("image", "load", content.id, { name: familiarRef(image.name) });
      continue;
    }
    // An image the archive does not name (saved by ID): kept untagged, shown by ID.
    const content = await catalog.content(image.target);
    await createName(svc, `${danglingPrefix}${image.target.digest}`, toWire(image.target));
    if (image.name !== `${danglingPrefix}${image.target.digest}`) await svc.images.delete({ name: image.name, sync: false }, backend.call()).catch(() => undefined);
    lines.push(`Loaded image ID: ${content.id}\n`);
    backend.events.publish("image", "load", content.id, { name: content.id });
  }
  const stream = ctx.jsonStream();
  for (const line of lines) stream.write({ stream: line });
  stream.end();
}

function toWire(target: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }) {
  return { mediaType: target.mediaType, digest: target.digest, size: BigInt(target.size), annotations: target.annotations ?? {} };
}

async function save(backend: Backend, ctx: RequestContext, refs: string[]): Promise<void> {
  if (refs.length === 0) throw badRequest("no image names given: add names=<image> to the query");
  const catalog = imageCatalog(backend);
  const names: string[] = [];
  const ids: string[] = [];
  for (const ref of refs) {
    const image = await catalog.find(ref);
    ids.push(image.id);
    // The name as asked for when it is one; by ID, every tag of the image (or its only name).
    let normalized: string | undefined;
    try {
      normalized = normalizeImageRef(ref);
    } catch {
      // an ID, not a name
    }
    const asked = normalized !== undefined && image.names.includes(normalized) ? normalized : undefined;
    const tags = image.names.filter((n) => splitStoreName(n)?.tag);
    const chosen = asked ? [asked] : tags.length > 0 ? tags : [image.names[0]!];
    for (const name of chosen) if (!names.includes(name)) names.push(name);
  }
  ctx.res.statusCode = 200;
  ctx.res.setHeader("Content-Type", "application/x-tar");
  try {
    await exportImages(backend.images, ctx.res, names, { format: "docker" });
  } catch (err) {
    if (err instanceof ExportError && !ctx.res.headersSent) throw badRequest(err.message);
    throw err;
  }
  ctx.res.end();
  for (const id of ids) backend.events.publish("image", "save", id, { name: id });
}

export function registerArchiveRoutes(router: Router, backend: Backend): void {
  router.post("/images/load", (ctx) => load(backend, ctx));
  router.get("/images/get", (ctx) => save(backend, ctx, ctx.query.getAll("names")));
  router.get("/images/*name/get", (ctx) => save(backend, ctx, [ctx.params.name!]));
}
