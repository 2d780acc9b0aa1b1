// `docker pull` (POST /images/create?fromImage=&tag=) and `docker push` (POST
// /images/{name}/push?tag=) through the daemon's transfer jobs, reported in Docker's
// JSON progress messages. A failure before the first progress message (a missing tag,
// an unreachable registry, bad credentials) is an HTTP error; after the 200 it is an
// in-band errorDetail, which the CLI shows and exits 1 on.
import { LayerStatus, type BlobProgress, type RegistryOptions } from "../../../core/gen/berth/services/transfer/v1/transfer.ts";
import { Status } from "nice-grpc-common";
import { blobInfo } from "../../../core/content-client.ts";
import { errorMessage, grpcCode } from "../../../core/grpc-status.ts";
import { isLoopback } from "../../../core/registry/hosts.ts";
import { callOptions } from "../../../core/image/services.ts";
import { isConfigType, isIndexType } from "../../../core/image/media-types.ts";
import { formatPlatform, hostPlatform } from "../../../core/image/platform.ts";
import type { Backend } from "../backend.ts";
import { badRequest, httpErrorOf, notFoundError, type JsonMessageStream, type RequestContext, type Router } from "../http.ts";
import { familiarName, familiarRef, joinRepoTag, parseImageRef, registryHost, shortId, splitStoreName } from "../references.ts";
import { imageCatalog } from "./catalog.ts";
import { defaultRegistryName } from "./default-registry.ts";
import { preservingReplaced, setName } from "./tagging.ts";

export interface AuthConfig {
  username?: string;
  password?: string;
  serveraddress?: string;
  identitytoken?: string;
}

/** X-Registry-Auth: base64url (or standard base64) JSON; `e30=` ({}) when anonymous. */
export function registryAuth(header: string | string[] | undefined): AuthConfig {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value.replace(/-/g, "+").replace(/_/g, "/"), "base64").toString("utf8"));
  } catch {
    throw badRequest("invalid X-Registry-Auth header: not base64-encoded JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw badRequest("invalid X-Registry-Auth header: not a JSON object");
  return parsed as AuthConfig;
}

/**
 * X-Registry-Config (/build): base64url JSON, registry → auth config, for every registry
 * the client has credentials for (keys as the CLI's config file has them: `host[:port]`,
 * or a URL such as https://index.docker.io/v1/).
 */
export function registryConfigs(header: string | string[] | undefined): Map<string, AuthConfig> {
  const value = Array.isArray(header) ? header[0] : header;
  const configs = new Map<string, AuthConfig>();
  if (!value) return configs;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value.replace(/-/g, "+").replace(/_/g, "/"), "base64").toString("utf8"));
  } catch {
    throw badRequest("invalid X-Registry-Config header: not base64-encoded JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw badRequest("invalid X-Registry-Config header: not a JSON object");
  for (const [key, auth] of Object.entries(parsed)) {
    if (typeof auth !== "object" || auth === null || Array.isArray(auth)) throw badRequest(`invalid X-Registry-Config header: the entry for ${key} is not a JSON object`);
    configs.set(configHost(key), auth as AuthConfig);
  }
  return configs;
}

/** A config key as the registry host a repository names (Docker Hub's index URL is docker.io). */
function configHost(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
  return host === "index.docker.io" || host === "registry-1.docker.io" ? "docker.io" : host;
}

/** The registry an X-Registry-Auth's serveraddress names (Docker Hub when it names none). */
function authHost(auth: AuthConfig): string {
  return auth.serveraddress ? configHost(auth.serveraddress) : "docker.io";
}

/** The credentials of `configs` for the registry of a store name (none: anonymous). */
export function authFor(configs: Map<string, AuthConfig>, name: string): AuthConfig {
  const split = splitStoreName(name);
  return (split && configs.get(registryHost(split.repository).toLowerCase())) ?? {};
}

function registryOptions(repository: string, auth: AuthConfig): RegistryOptions {
  const credentials = auth.username || auth.password ? { username: auth.username ?? "", password: auth.password ?? "" } : undefined;
  // Docker treats loopback registries as insecure without being told (127.0.0.0/8 is by
  // default): HTTPS without verification first, plain HTTP if that cannot connect.
  return { plainHttp: false, insecure: isLoopback(registryHost(repository)), credentials };
}

/** The path part Docker shows in "Pulling from …": the repository without its registry (library/busybox). */
function remotePath(repository: string): string {
  return repository.slice(repository.indexOf("/") + 1);
}

const pullWords: Partial<Record<LayerStatus, string>> = {
  [LayerStatus.LAYER_STATUS_WAITING]: "Waiting",
  [LayerStatus.LAYER_STATUS_DOWNLOADING]: "Downloading",
  [LayerStatus.LAYER_STATUS_VERIFYING]: "Verifying Checksum",
  [LayerStatus.LAYER_STATUS_DOWNLOADED]: "Download complete",
  [LayerStatus.LAYER_STATUS_EXTRACTING]: "Extracting",
  [LayerStatus.LAYER_STATUS_DONE]: "Pull complete",
  [LayerStatus.LAYER_STATUS_EXISTS]: "Already exists",
};

const pushWords: Partial<Record<LayerStatus, string>> = {
  [LayerStatus.LAYER_STATUS_WAITING]: "Waiting",
  [LayerStatus.LAYER_STATUS_UPLOADING]: "Pushing",
  [LayerStatus.LAYER_STATUS_DONE]: "Pushed",
  [LayerStatus.LAYER_STATUS_EXISTS]: "Layer already exists",
  [LayerStatus.LAYER_STATUS_MOUNTED]: "Mounted from another repository",
};

const withBytes = new Set<LayerStatus>([LayerStatus.LAYER_STATUS_DOWNLOADING, LayerStatus.LAYER_STATUS_EXTRACTING, LayerStatus.LAYER_STATUS_UPLOADING]);

/** A text bar like Docker's deprecated `progress` field (clients without a terminal ignore it). */
function progressBar(done: number, total: number): string {
  const width = 50;
  const filled = total > 0 ? Math.min(width, Math.floor((done / total) * width)) : 0;
  const bar = `${"=".repeat(Math.max(0, filled - 1))}${filled > 0 ? ">" : ""}${" ".repeat(width - filled)}`;
  return `[${bar}] ${humanBytes(done)}/${humanBytes(total)}`;
}

function humanBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(3).replace(/\.?0+$/, "")}${units[unit]}`;
}

/**
 * Turns the transfer's whole-picture messages into Docker's per-layer ones: each layer
 * (not the config) gets a row keyed by its short digest, and a message when its status
 * or byte count changes.
 */
class LayerRows {
  private readonly seen = new Map<string, string>();
  private readonly stream: ProgressWriter;
  private readonly words: Partial<Record<LayerStatus, string>>;
  private readonly first: string;

  constructor(stream: ProgressWriter, words: Partial<Record<LayerStatus, string>>, first: string) {
    this.stream = stream;
    this.words = words;
    this.first = first;
  }

  update(blobs: BlobProgress[]): void {
    for (const blob of blobs) {
      if (isConfigType(blob.mediaType)) continue;
      const id = shortId(blob.digest);
      const done = Number(blob.done);
      const total = Number(blob.total);
      const word = this.words[blob.status];
      if (!this.seen.has(id)) {
        this.seen.set(id, "");
        if (blob.status !== LayerStatus.LAYER_STATUS_EXISTS) this.stream.write({ status: this.first, progressDetail: {}, id });
      }
      if (!word) continue;
      const key = withBytes.has(blob.status) ? `${word}:${done}` : word;
      if (this.seen.get(id) === key) continue;
      this.seen.set(id, key);
      if (withBytes.has(blob.status)) this.stream.write({ status: word, progressDetail: { current: done, total }, progress: progressBar(done, total), id });
      else this.stream.write({ status: word, progressDetail: {}, id });
    }
  }
}

/** The first message of a call, so failures before any progress become HTTP errors. */
async function firstOf<T>(iterable: AsyncIterable<T>): Promise<{ first: IteratorResult<T>; rest: AsyncIterator<T> }> {
  const iterator = iterable[Symbol.asyncIterator]();
  return { first: await iterator.next(), rest: iterator };
}

/** The gateway's words for "the process serving this went away mid-call" (the jobs process restarted). */
function serviceRestarted(err: unknown): boolean {
  return grpcCode(err) === Status.UNAVAILABLE && /^service for berth\.services\.transfer\.v1\.Transfer (closed the call|is unavailable)/.test(errorMessage(err));
}

const maxReattachMs = 120_000;

/**
 * The rest of a transfer's messages; when the jobs process restarts mid-transfer, the same
 * request again (it attaches to the transfer still under way) until the last message.
 */
async function* followTransfer<T>(rest: AsyncIterator<T>, reopen: () => AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const started = Date.now();
  let delay = 250;
  let iterator = rest;
  for (;;) {
    try {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
      return;
    } catch (err) {
      if (signal.aborted || !serviceRestarted(err) || Date.now() - started > maxReattachMs) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
      iterator = reopen()[Symbol.asyncIterator]();
    }
  }
}

/** Where a pull's messages go: the /images/create stream, or a build's output. */
export interface ProgressWriter {
  write(message: Record<string, unknown>): void;
}

export interface PullRequestOptions {
  /** os/arch[/variant], or "" for this host's. */
  platform: string;
  auth: AuthConfig;
  signal: AbortSignal;
}

/**
 * Pulls `name` (a store name: docker.io/library/busybox:latest) through the transfer jobs,
 * writing Docker's progress messages. `begin` is called once the registry answered (a
 * failure before that is thrown as Docker's HTTP error, with nothing written); it gives
 * the writer. Resolves with the pulled manifest's digest.
 */
export async function pullImage(backend: Backend, name: string, options: PullRequestOptions, begin: () => ProgressWriter): Promise<string> {
  const split = splitStoreName(name)!;
  const svc = backend.images;
  let previous: string | undefined;
  try {
    previous = (await svc.images.get({ name }, callOptions(svc))).image?.target?.digest;
  } catch {
    previous = undefined;
  }
  const request = { ref: name, platform: options.platform, registry: registryOptions(split.repository, options.auth), unpack: true, snapshotter: "" };
  const outcome = await preservingReplaced(svc, [name], async (): Promise<{ digest: string } | { error: unknown }> => {
    const open = () => backend.transfer.pull(request, backend.call(undefined, options.signal));
    const { first, rest } = await firstOf(open()).catch((err: unknown) => {
      throw pullError(err, name);
    });
    const stream = begin();
    // A failure after the progress began still lets an image the name left be kept (as untagged).
    try {
      const rows = new LayerRows(stream, pullWords, "Pulling fs layer");
      stream.write({ status: `Pulling from ${remotePath(split.repository)}`, id: split.tag ?? split.digest });
      let last = first.done ? undefined : first.value;
      if (last) rows.update(last.blobs);
      if (!first.done) {
        for await (const message of followTransfer(rest, open, options.signal)) {
          last = message;
          rows.update(message.blobs);
        }
      }
      const image = last?.image;
      if (!image) throw new Error("the pull ended without an image");
      const digestName = `${split.repository}@${image.digest}`;
      if (!split.digest) await setName(svc, digestName, { mediaType: image.mediaType, digest: image.digest, size: await manifestSize(backend, image.digest) });
      stream.write({ status: `Digest: ${image.digest}` });
      const shown = familiarRef(name);
      stream.write({ status: previous === image.digest ? `Status: Image is up to date for ${shown}` : `Status: Downloaded newer image for ${shown}` });
      backend.events.publish("image", "pull", shown, { name: shown });
      return { digest: image.digest };
    } catch (error) {
      return { error };
    }
  });
  if ("error" in outcome) throw outcome.error;
  return outcome.digest;
}

async function pull(backend: Backend, ctx: RequestContext): Promise<void> {
  if (ctx.query.get("fromSrc") !== null) throw badRequest("docker import (fromSrc) is not supported by Berth");
  const fromImage = ctx.query.get("fromImage");
  if (!fromImage) throw badRequest("fromImage is required: the repository to pull");
  const dockerName = joinRepoTag(fromImage, ctx.query.get("tag"));
  const name = defaultRegistryName(dockerName, backend.options.registry?.defaultRegistry) ?? dockerName;
  const sentAuth = registryAuth(ctx.req.headers["x-registry-auth"]);
  // The client picked these credentials for the registry it thinks the name is on (Docker
  // Hub for a short name); they go to the default registry only when they were meant for it.
  const auth = name === dockerName || authHost(sentAuth) === registryHost(splitStoreName(name)!.repository).toLowerCase() ? sentAuth : {};
  const abort = new AbortController();
  ctx.res.on("close", () => abort.abort());
  let stream: JsonMessageStream | undefined;
  try {
    await pullImage(backend, name, { platform: ctx.query.get("platform") ?? "", auth, signal: abort.signal }, () => (stream = ctx.jsonStream()));
  } catch (err) {
    if (!stream) throw err;
    stream.fail(err);
    return;
  }
  stream!.end();
}

async function manifestSize(backend: Backend, digest: string): Promise<number> {
  const info = await blobInfo(backend.images.content, digest, callOptions(backend.images));
  return Number(info?.size ?? 0);
}

/** Docker's wording for the failures clients show: a missing tag is a 404 naming the reference. */
function pullError(err: unknown, name: string): unknown {
  const { status, message } = httpErrorOf(err);
  if (status !== 404) return err;
  const reason = /MANIFEST_UNKNOWN/.test(message) ? "manifest unknown: manifest unknown" : message.replace(/: not found$/, "");
  return notFoundError(`manifest for ${familiarRef(name)} not found: ${reason}`);
}

async function push(backend: Backend, ctx: RequestContext): Promise<void> {
  const repoParam = ctx.params.name!;
  const tag = ctx.query.get("tag");
  const repository = pushTarget(repoParam);
  const auth = registryAuth(ctx.req.headers["x-registry-auth"]);
  const catalog = imageCatalog(backend);
  // The names to push: the one tag asked for, or every tag of the repository.
  const images = await catalog.list();
  const targets = new Map(images.flatMap((image) => image.names.map((n) => [n, image.target] as const)));
  const ownTag = tag || repository.tag;
  const wanted = ownTag ? [joinRepoTag(repository.name, ownTag)] : [...targets.keys()].filter((n) => splitStoreName(n)?.repository === repository.name && splitStoreName(n)?.tag);
  if (wanted.length === 0 || wanted.some((n) => !targets.has(n))) {
    throw notFoundError(`An image does not exist locally with the tag: ${familiarName(repository.name)}${ownTag ? `:${ownTag}` : ""}`);
  }

  const abort = new AbortController();
  ctx.res.on("close", () => abort.abort());
  const stream = ctx.jsonStream();
  stream.write({ status: `The push refers to repository [${familiarName(repository.name)}]` });
  try {
    for (const name of wanted) {
      const rows = new LayerRows(stream, pushWords, "Preparing");
      // An index is pushed as this host's manifest (the store may hold no other platform's content), as Docker pushes.
      const platform = isIndexType(targets.get(name)!.mediaType) ? formatPlatform(hostPlatform()) : "";
      const request = { source: name, ref: name, platform, registry: registryOptions(repository.name, auth) };
      let last;
      const open = () => backend.transfer.push(request, backend.call(undefined, abort.signal));
      for await (const message of followTransfer(open()[Symbol.asyncIterator](), open, abort.signal)) {
        last = message;
        rows.update(message.blobs);
      }
      const image = last?.image;
      if (!image) throw new Error("the push ended without a result");
      const size = await manifestSize(backend, image.digest);
      const pushedTag = splitStoreName(name)!.tag!;
      stream.write({ status: `${pushedTag}: digest: ${image.digest} size: ${size}` });
      stream.write({ progressDetail: {}, aux: { Tag: pushedTag, Digest: image.digest, Size: size } });
      await setName(backend.images, `${repository.name}@${image.digest}`, { mediaType: image.mediaType, digest: image.digest, size });
      backend.events.publish("image", "push", familiarRef(name), { name: familiarRef(name) });
    }
    stream.end();
  } catch (err) {
    stream.fail(err);
  }
}

/** The push route's name: a repository (the CLI), or a repository with its tag (other clients). */
function pushTarget(value: string): { name: string; tag?: string } {
  const r = parseImageRef(value);
  if (r.digest) throw badRequest(`cannot push a digest reference: ${value}`);
  return { name: r.name, ...(r.tag ? { tag: r.tag } : {}) };
}

export function registerTransferRoutes(router: Router, backend: Backend): void {
  router.post("/images/create", (ctx) => pull(backend, ctx));
  router.post("/images/*name/push", (ctx) => push(backend, ctx));
}
