// The images a build starts from or copies from (FROM, COPY --from=<image>, an ONBUILD
// base), pulled when the store does not have them, as Docker's classic builder does, and
// every time with the /build `pull` query (`docker build --pull`), through the same
// transfer jobs as `docker pull`. Each image is pulled at most once per build, its progress
// shown as it comes to the first caller that asks for it (the planning that reads a base's
// ONBUILD triggers, before the steps); messages no caller took yet are kept for the next.
import type { Platform } from "../../../core/image/platform.ts";
import { formatPlatform } from "../../../core/image/platform.ts";
import { normalizeDockerRef, ReferenceError } from "../../../core/image/reference.ts";
import { namesRegistry, parseRegistryReference, referenceString } from "../../../core/registry/reference.ts";
import type { Backend } from "../backend.ts";
import { httpErrorOf } from "../http.ts";
import { pullImage, type AuthConfig } from "../images/transfer-routes.ts";
import { loadImage, type BuildImage } from "./image-store.ts";

export type ProgressMessage = Record<string, unknown>;

export interface BasePullOptions {
  /** Pull even when the store has the image (`pull=1`): a newer one may be in the registry. */
  always: boolean;
  /** The credentials the client sent for the registry of a store name. */
  auth(name: string): AuthConfig;
  /** The build was cancelled: a pull under way stops. */
  signal: AbortSignal;
  /** Where short names (busybox) are pulled from instead of Docker Hub (the daemon's registry settings). */
  defaultRegistry?: string;
}

interface PullRecord {
  done: Promise<void>;
  messages: ProgressMessage[];
  /** Where new messages go once a step shows this pull. */
  live: ((message: ProgressMessage) => void) | undefined;
  shown: boolean;
}

/** A name the registry could have: a reference, not an image id (`sha256:…` or 64 hex digits). */
function pullableName(ref: string): string | undefined {
  if (/^(sha256:)?[0-9a-f]{64}$/.test(ref)) return undefined;
  try {
    return normalizeDockerRef(ref);
  } catch (err) {
    if (err instanceof ReferenceError) return undefined;
    throw err;
  }
}

const pullKey = (name: string, platform: Platform | undefined) => `${name} ${platform ? formatPlatform(platform) : ""}`;

const isMissing = (err: unknown) => {
  const { status, message } = httpErrorOf(err);
  return status === 404 && message.startsWith("No such image");
};

export class BaseImages {
  private readonly backend: Backend;
  private readonly options: BasePullOptions;
  private readonly pulls = new Map<string, PullRecord>();
  /** Images the store had, by ref and platform: planning (ONBUILD triggers) and FROM read each once. */
  private readonly stored = new Map<string, Promise<BuildImage>>();

  constructor(backend: Backend, options: BasePullOptions) {
    this.backend = backend;
    this.options = options;
  }

  /**
   * The image `ref` names (for `platform`), pulled first when missing or when every base
   * is to be pulled; the pull's messages go to `progress` (none: kept for a later caller).
   */
  async load(ref: string, platform: Platform | undefined, progress?: (message: ProgressMessage) => void): Promise<BuildImage> {
    const remote = this.remoteName(ref);
    // Pulled already in this build (maybe while planning, its messages kept for this step).
    if (remote && (this.options.always || this.pulls.has(pullKey(remote, platform)))) {
      await this.pull(remote, platform, progress);
      return loadImage(this.backend, remote, platform);
    }
    try {
      return await this.loadStored(ref, platform);
    } catch (err) {
      if (!remote || !isMissing(err)) throw err;
    }
    if (remote !== normalizeDockerRef(ref)) {
      // A short name a default registry's earlier pull stored under that registry's name.
      try {
        return await loadImage(this.backend, remote, platform);
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
    }
    await this.pull(remote, platform, progress);
    return loadImage(this.backend, remote, platform);
  }

  private loadStored(ref: string, platform: Platform | undefined): Promise<BuildImage> {
    const key = pullKey(ref, platform);
    let found = this.stored.get(key);
    if (!found) {
      found = loadImage(this.backend, ref, platform);
      this.stored.set(key, found);
      // Missing now may be pulled next: only an image found is kept.
      found.catch(() => this.stored.get(key) === found && this.stored.delete(key));
    }
    return found;
  }

  /**
   * The store name a pull of `ref` gets: Docker's (docker.io/library/busybox:latest), or for
   * a short name when the daemon has a default registry, that registry's (as `berthctl
   * pull` names it). Undefined for an image id, which no registry has.
   */
  private remoteName(ref: string): string | undefined {
    const name = pullableName(ref);
    const defaultRegistry = this.options.defaultRegistry;
    if (!name || !defaultRegistry || namesRegistry(ref)) return name;
    return referenceString(parseRegistryReference(ref, defaultRegistry));
  }

  private async pull(name: string, platform: Platform | undefined, progress?: (message: ProgressMessage) => void): Promise<void> {
    const key = pullKey(name, platform);
    let record = this.pulls.get(key);
    if (!record) {
      const fresh: PullRecord = { done: Promise.resolve(), messages: [], live: undefined, shown: false };
      const writer = {
        write: (message: ProgressMessage) => {
          fresh.messages.push(message);
          fresh.live?.(message);
        },
      };
      fresh.done = pullImage(this.backend, name, { platform: platform ? formatPlatform(platform) : "", auth: this.options.auth(name), signal: this.options.signal }, () => writer).then(() => undefined);
      // Awaited by whoever needs the image; a planning pull that nobody awaits is not unhandled.
      fresh.done.catch(() => undefined);
      this.pulls.set(key, fresh);
      record = fresh;
    }
    if (progress && !record.shown) {
      record.shown = true;
      for (const message of record.messages) progress(message);
      record.live = progress;
    }
    try {
      await record.done;
    } finally {
      if (record.live === progress) record.live = undefined;
    }
  }
}
