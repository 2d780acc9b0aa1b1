// docker commit: the container's changes as a new image layer, as containerd's commit
// flow makes one: the diff service writes the difference between the snapshot's parent
// (a temporary view) and the container's snapshot into the content store; a new config
// (the base image's, with the diff id appended, a history entry, the `--change`
// instructions and the request's config applied) and a new manifest are stored with the
// gc.ref labels that keep the layer and config alive; the images service names the result
// (a moved name leaves the old image untagged, as the images routes do).
// All of it happens under a lease, so a failure leaves nothing that garbage collection
// would not remove.
import { randomBytes } from "node:crypto";
import { ClientError, Status as GrpcStatus } from "nice-grpc-common";
import { blobInfo, readBlobBytes, writeBlob } from "../../../core/content-client.ts";
import { descriptorJson, goJson, type Descriptor } from "../../../core/image/manifest.ts";
import { childGcLabel, isManifestType, labels as wellKnown, mediaTypes } from "../../../core/image/media-types.ts";
import { defaultPlatformMatcher } from "../../../core/image/platform.ts";
import { normalizeDockerRef, ReferenceError } from "../../../core/image/reference.ts";
import { resolveImage } from "../../../core/image/resolve.ts";
import { withLease } from "../../../core/image/lease.ts";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import type { Backend } from "../backend.ts";
import { badRequest, notFoundError, serverError } from "../http.ts";
import type { ContainerRecord } from "../store.ts";
import { containerInfo, taskState } from "../exec/container-state.ts";
import { applyChange, type RunConfig } from "./commit-changes.ts";
import { danglingPrefix } from "../images/catalog.ts";
import { setName } from "../images/tagging.ts";

export interface CommitRequest {
  record: ContainerRecord;
  repo: string;
  tag: string;
  comment: string;
  author: string;
  changes: string[];
  /** Pause a running container while its changes are read (Docker's default). */
  pause: boolean;
  /** Config fields from the request body, laid over the base image's. */
  config: RunConfig | undefined;
}

export interface Committed {
  /** The image id: its config digest. */
  id: string;
  /** The name it was stored under. */
  name: string;
}

/** The name to store: repo[:tag] normalized; without a repo, a dangling name keyed by the manifest digest (as Docker's containerd store names untagged images). */
export function commitName(repo: string, tag: string): ((manifestDigest: string) => string) {
  if (!repo) {
    if (tag) throw badRequest("tag is not allowed without a repository name");
    return (digest) => `${danglingPrefix}${digest}`;
  }
  let name: string;
  try {
    name = normalizeDockerRef(tag ? `${repo}:${tag}` : repo);
  } catch (err) {
    if (err instanceof ReferenceError) throw badRequest(`invalid reference format: ${err.message}`);
    throw err;
  }
  if (name.includes("@")) throw badRequest(`invalid reference format: a commit cannot be named by a digest (${repo})`);
  return () => name;
}

interface ImageDocument {
  created?: string;
  author?: string;
  config?: RunConfig;
  rootfs?: { type: string; diff_ids: string[] };
  history?: Record<string, unknown>[];
  [key: string]: unknown;
}

const isNotFoundError = (err: unknown) => err instanceof ClientError && err.code === GrpcStatus.NOT_FOUND;

export async function commitContainer(backend: Backend, request: CommitRequest): Promise<Committed> {
  const svc = backend.images;
  const record = request.record;
  const nameFor = commitName(request.repo, request.tag);
  const info = await containerInfo(backend, record.Id);

  const baseImage = await svc.images.get({ name: info.image }, backend.call()).catch((err: unknown) => {
    if (isNotFoundError(err)) throw notFoundError(`No such image: ${info.image} (the image of container ${record.Id} is gone)`);
    throw err;
  });
  const target = baseImage.image?.target;
  if (!target) throw serverError(`image ${info.image} has no target`);
  const base = await resolveImage(svc, { mediaType: target.mediaType, digest: target.digest, size: Number(target.size) }, defaultPlatformMatcher());
  const document = JSON.parse((await readBlobBytes(svc.content, base.configDescriptor.digest, backend.call(), { limit: 8 << 20 })).toString("utf8")) as ImageDocument;

  // Everything the request can get wrong is checked before any work starts.
  // As Docker's commit: the container's own config (the image's defaults merged with what
  // create set) becomes the image's, then the request's config and changes.
  const runConfig: RunConfig = { ...(document.config ?? {}), ...containerRunConfig(record), ...(request.config ?? {}) };
  for (const change of request.changes) applyChange(runConfig, change);

  return withLease(svc, undefined, async (lease) => {
    const call = backend.call(lease);
    const layer = await withPaused(backend, record.Id, request.pause, () => diffLayer(backend, info.snapshotter, info.snapshotKey, lease));
    const diffId = (await blobInfo(svc.content, layer.digest, call))?.labels[wellKnown.uncompressed];
    if (!diffId) throw serverError(`the diff service stored layer ${layer.digest} without its uncompressed digest`);

    const now = new Date().toISOString();
    const history: Record<string, unknown> = { created: now, created_by: [record.Path, ...record.Args].join(" ") };
    if (request.author) history.author = request.author;
    if (request.comment) history.comment = request.comment;
    const config: ImageDocument = {
      ...document,
      created: now,
      ...(request.author ? { author: request.author } : {}),
      config: runConfig,
      rootfs: { type: "layers", diff_ids: [...(document.rootfs?.diff_ids ?? []), diffId] },
      history: [...(document.history ?? []), history],
    };
    const configBytes = Buffer.from(goJson(config));
    const configDesc: Descriptor = { mediaType: base.configDescriptor.mediaType, digest: "", size: configBytes.length };
    configDesc.digest = (await writeBlob(svc.content, configBytes, { ref: `commit-config-${randomBytes(8).toString("hex")}` }, call)).digest;

    const manifestType = base.manifest.mediaType && isManifestType(base.manifest.mediaType) ? base.manifest.mediaType : base.descriptor.mediaType;
    const layerDesc: Descriptor = { mediaType: manifestType === mediaTypes.dockerManifest ? mediaTypes.dockerLayerGzip : layer.mediaType, digest: layer.digest, size: layer.size };
    const layers = [...base.manifest.layers, layerDesc];
    const manifest = { schemaVersion: 2, mediaType: manifestType, config: descriptorJson(configDesc), layers: layers.map(descriptorJson) };
    const manifestBytes = Buffer.from(goJson(manifest));
    const gcLabels: Record<string, string> = { [childGcLabel(configDesc.mediaType)]: configDesc.digest };
    layers.forEach((l, i) => (gcLabels[`${childGcLabel(l.mediaType)}${i}`] = l.digest));
    const written = await writeBlob(svc.content, manifestBytes, { ref: `commit-manifest-${randomBytes(8).toString("hex")}`, labels: gcLabels }, call);

    const name = nameFor(written.digest);
    // A name taken before moves to the new image; the image it named stays, untagged (as Docker keeps it).
    await setName(svc, name, { mediaType: manifestType, digest: written.digest, size: manifestBytes.length });
    return { id: configDesc.digest, name };
  });
}

/** Runs `fn` with the container paused when asked and it runs (a consistent snapshot of its files). */
async function withPaused<T>(backend: Backend, id: string, pause: boolean, fn: () => Promise<T>): Promise<T> {
  const paused = pause && (await taskState(backend, id)).state === "running";
  if (paused) await backend.tasks.pause({ containerId: id }, backend.call());
  try {
    return await fn();
  } finally {
    if (paused) await backend.tasks.resume({ containerId: id }, backend.call()).catch((err: Error) => backend.log.error({ id, err: err.message }, "cannot resume a container after commit"));
  }
}

/** The diff service's layer of what the container's snapshot changed over its parent. */
export async function diffLayer(backend: Backend, snapshotter: string, key: string, lease: string, mediaType: string = mediaTypes.ociLayerGzip): Promise<{ mediaType: string; digest: string; size: number }> {
  const svc = backend.images;
  const call = backend.call(lease);
  const { info } = await svc.snapshots.stat({ snapshotter, key }, call);
  const { mounts: right } = await svc.snapshots.mounts({ snapshotter, key }, call);
  const viewKey = `commit-view-${randomBytes(8).toString("hex")}`;
  let left: Mount[] = [];
  if (info?.parent) left = (await svc.snapshots.view({ snapshotter, key: viewKey, parent: info.parent, labels: {} }, call)).mounts;
  try {
    const { diff } = await svc.diff.diff({ left, right, mediaType, ref: `commit-layer-${randomBytes(8).toString("hex")}`, labels: {} }, call);
    if (!diff) throw serverError("the diff service returned no layer");
    return { mediaType: diff.mediaType, digest: diff.digest, size: Number(diff.size) };
  } finally {
    if (info?.parent) await svc.snapshots.remove({ snapshotter, key: viewKey }, call).catch(() => {});
  }
}

/** The fields of a container's config an image config carries (what says how to run it). */
function containerRunConfig(record: ContainerRecord): RunConfig {
  const c = record.Config;
  const out: RunConfig = {};
  if (c.User) out.User = c.User;
  if (c.ExposedPorts && Object.keys(c.ExposedPorts).length > 0) out.ExposedPorts = c.ExposedPorts;
  if (c.Env && c.Env.length > 0) out.Env = c.Env;
  if (c.Entrypoint && c.Entrypoint.length > 0) out.Entrypoint = c.Entrypoint;
  if (c.Cmd && c.Cmd.length > 0) out.Cmd = c.Cmd;
  if (c.Volumes && Object.keys(c.Volumes).length > 0) out.Volumes = c.Volumes;
  if (c.WorkingDir) out.WorkingDir = c.WorkingDir;
  if (c.Labels && Object.keys(c.Labels).length > 0) out.Labels = c.Labels;
  if (c.StopSignal) out.StopSignal = c.StopSignal;
  return out;
}
