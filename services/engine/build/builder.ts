// The classic builder: a Dockerfile's steps run in order over an image, each step's result
// a stored image found again by its cache key. RUN is a process runc runs on a snapshot of
// the parent (run-process.ts), its output streamed, the snapshot diffed into a layer; COPY
// and ADD write into a snapshot of the parent and diff it; the other instructions change
// only the config (a history entry with `empty_layer`).
import { AsyncLocalStorage } from "node:async_hooks";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readFileSync, realpathSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { blobInfo } from "../../../core/content-client.ts";
import { chainId } from "../../../core/image/chain-id.ts";
import { isNotFound } from "../../../core/grpc-status.ts";
import { labels as wellKnown, mediaTypes } from "../../../core/image/media-types.ts";
import { createLease, deleteLease, withLease } from "../../../core/image/lease.ts";
import { normalizeDockerRef } from "../../../core/image/reference.ts";
import { mountAll, unmountAll } from "../../../core/mounts.ts";
import { prepareRootfs } from "../../../core/rootfs.ts";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { mergeEnv } from "../../../core/oci/spec.ts";
import type { Backend } from "../backend.ts";
import { badRequest, httpErrorOf, serverError } from "../http.ts";
import { snapshotter } from "../containers/image.ts";
import { unpackImage } from "../../../core/image/unpack.ts";
import { startFailureCode } from "../containers/lifecycle.ts";
import { buildSpec } from "../containers/config.ts";
import { userInRootfs } from "../containers/rootfs-files.ts";
import { parseSignal } from "../containers/signals.ts";
import { resolveUser } from "../../../core/oci/user.ts";
import type { OciUser } from "../../../core/oci/spec.ts";
import type { ContainerConfig, HostConfig } from "../store.ts";
import { setName, storeRecord } from "../images/tagging.ts";
import type { Descriptor } from "../../../core/image/manifest.ts";
import { familiarRef, shortId } from "../references.ts";
import { expandText, keyValues, parseDockerfile, processWords, type Instruction } from "./dockerfile.ts";
import { recordCacheUse } from "./cache.ts";
import { OrderedOutput, planStages, triggerCopySources, type StagePlan } from "./stages.ts";
import { heredocRun, heredocSources, isHeredocWord, writeScript, type HeredocRun } from "./heredoc.ts";
import { healthcheckHistory, parseHealthcheck } from "./healthcheck.ts";
import { BaseImages, type ProgressMessage } from "./base-pull.ts";
import type { AuthConfig } from "../images/transfer-routes.ts";
import { CacheIndex, markResult, PlatformMismatch, scratchImage, storeImageLater, type BuildImage, type ImageDocument } from "./image-store.ts";
import { automaticPlatformArgNames, automaticPlatformArgs, cannotRunHere, documentPlatform, fromPlatform, requestedPlatform } from "./platforms.ts";
import { hostPlatform, type Platform } from "../../../core/image/platform.ts";
import { ownLayer, ownLayerLimit, stepLayer, storeOwnLayer, type LayerDescriptor, type OwnLayer } from "./step-layer.ts";
import { unsynced } from "./unsynced-mounts.ts";
import { digestsOf } from "./context-digests.ts";
import { newRunId, runcRootOf, runProcess, RunStartError } from "./run-process.ts";
import { RunNetworks, type RunNetwork } from "./run-network.ts";
import { buildNetworksDir } from "./work-dir.ts";
import { removeRunMountPoints } from "./run-mountpoints.ts";
import { copyTree, destinationIn, hashSources, selectSources, type Owner, type Selected } from "./sources.ts";
import { archiveFormat, unpackArchive } from "./archives.ts";
import type { BuildTrace } from "./trace.ts";
import { GatedOutput } from "./gated-output.ts";
import { inodePoolOf } from "./inode-pool.ts";
import { upperPlacer, type UpperPlacer } from "./upper-placer.ts";

export interface BuildOptions {
  dockerfile: string;
  tags: string[];
  buildArgs: Record<string, string | null>;
  noCache: boolean;
  labels: Record<string, string>;
  target: string;
  quiet: boolean;
  /** The /build `platform` query: what a FROM without --platform selects ("" or absent: this host). */
  platform?: string;
  /** The /build `pull` query: pull every base image, even one the store has. */
  pull?: boolean;
  /** The /build `networkmode` query: the RUN steps' network (absent: the default bridge; run-network.ts). */
  networkMode?: string;
}

export interface BuildOutput {
  stream(text: string): void;
  aux(value: unknown): void;
  /** A pull's progress message (a base image the store did not have), as `docker pull` streams it. */
  progress(message: ProgressMessage): void;
  /** The client went away: the build stops before its next step. */
  closed(): boolean;
}

/** What a durable build (build/job.ts) learns as the build runs, to remove after a crash. */
export interface BuildHooks {
  /**
   * The build's own directory: the COPY steps' mount points, the RUN steps' bundles and
   * runc's state for them go there, where the engine looks for what a killed build left
   * (default: the system temp dir).
   */
  scratchDir?: string;
  /** The credentials the client sent (X-Registry-Config) for the registry of a store name. */
  registryAuth?(name: string): AuthConfig;
  /** Aborted: the build is cancelled, a RUN under way is killed, a base image's pull stops. */
  cancelled?: AbortSignal;
  /** Where the build's phases are timed (trace.ts). */
  trace?: BuildTrace;
}

/** A build that failed after the stream started: `code` is what the CLI exits with. */
export class BuildFailure extends Error {
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.code = code;
  }
}

interface Stage {
  name: string | undefined;
  from: Instruction;
  steps: Instruction[];
}

interface StageState {
  image: BuildImage;
  /** ARGs declared in this stage and their values. */
  args: Map<string, string>;
}

/** What a stage writes: text, or a pull's progress message. */
type OutputItem = string | ProgressMessage;

interface StageSink {
  write(item: OutputItem): void;
  /** The number the stage's next Step line gets. */
  nextStep: number;
  /** Another stage failed: stop before the next step. */
  stopped(): boolean;
  /** A RUN comes after the step under way in this stage: a cache miss now means it will run. */
  runAhead?: boolean;
  /** The step under way makes the build's result (the target stage's last step, no --label step after it). */
  resultStep?: boolean;
}

const defaultShell = ["/bin/sh", "-c"];

/** Build layers stay uncompressed: compressing is most of a COPY's cost, and a push can compress. */
const layerMediaType = mediaTypes.ociLayer;

/** The Dockerfile read from the context and split into stages; everything wrong with it is a 400 before any output. */
export function planBuild(contextDir: string, options: BuildOptions): { stages: Stage[]; globals: Instruction[]; escape: string; last: number } {
  const path = join(contextDir, posix.normalize(`/${options.dockerfile || "Dockerfile"}`));
  if (!existsSync(path) || !lstatSync(path).isFile()) throw badRequest(`Cannot locate specified Dockerfile: ${options.dockerfile || "Dockerfile"}`);
  if (!realpathSync(path).startsWith(realpathSync(contextDir))) throw badRequest(`Forbidden path outside the build context: ${options.dockerfile}`);
  const file = parseDockerfile(readFileSync(path, "utf8"));
  const globals: Instruction[] = [];
  const stages: Stage[] = [];
  for (const instruction of file.instructions) {
    if (instruction.keyword === "FROM") {
      const words = instruction.args.split(/\s+/);
      const name = words.length === 3 && words[1]!.toUpperCase() === "AS" ? words[2]!.toLowerCase() : undefined;
      if (words.length !== 1 && !name) throw badRequest(`dockerfile parse error on line ${instruction.line}: FROM requires either one or three arguments`);
      for (const flag of instruction.flags.keys()) if (flag !== "platform") throw badRequest(`dockerfile parse error on line ${instruction.line}: unknown flag: ${flag}`);
      stages.push({ name, from: instruction, steps: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== "ARG") throw badRequest(`dockerfile parse error on line ${instruction.line}: no build stage in current context`);
      globals.push(instruction);
    } else {
      stages.at(-1)!.steps.push(instruction);
    }
  }
  if (stages.length === 0) throw badRequest("the Dockerfile has no FROM instruction: no build stage in current context");
  let last = stages.length - 1;
  if (options.target) {
    last = stages.findIndex((s) => s.name === options.target.toLowerCase());
    if (last < 0) throw badRequest(`failed to reach build target ${options.target} in Dockerfile`);
  }
  return { stages, globals, escape: file.escape, last };
}

export class Build {
  private readonly backend: Backend;
  private readonly contextDir: string;
  private readonly options: BuildOptions;
  private readonly out: BuildOutput;
  private readonly usedArgs = new Set<string>();
  private escape = "\\";
  private stepNumber = 0;
  private stepCount = 0;
  private leaseId: Promise<string> | undefined;
  /** Ids of the images this build stored (their created times make them new). */
  private readonly made = new Set<string>();
  /** The image made as the build's result, its mark set in the write that names it (madeHere). */
  private madeAsResult: string | undefined;
  /**
   * The writes of the images this build made, by image: a step's image is written while the
   * next step runs, and that step's result is not shown before its parent is stored.
   */
  private readonly writes = new Map<string, Promise<boolean>>();
  /**
   * By image: the stores of the layers this build made for it (commitOwnLayer) still under
   * way, its parents' included. Its name waits for them: no image names a missing layer.
   */
  private readonly layerStores = new Map<string, Promise<unknown>>();
  /** The running stage's output and step numbers (stages run concurrently). */
  private readonly stageSinks = new AsyncLocalStorage<StageSink>();
  /** FROM images whose ONBUILD triggers ran (their config in memory differs from the stored one). */
  private readonly triggersCleared = new WeakSet<BuildImage>();

  private readonly hooks: BuildHooks;
  private readonly cache: CacheIndex;
  /** The platform the request asked for; undefined: this host's, and an index's best match for it. */
  private readonly targetPlatform: Platform | undefined;
  /** FROM and COPY --from images, pulled when missing (or always, with `pull`). */
  private readonly bases: BaseImages;
  /** The RUN steps' network namespaces, shared by the build's RUNs and released when it ends. */
  private readonly runNetworks: RunNetworks;
  private readonly trace: BuildTrace;

  constructor(backend: Backend, contextDir: string, options: BuildOptions, out: BuildOutput, hooks: BuildHooks = {}) {
    this.hooks = hooks;
    this.trace = hooks.trace ?? { mark: () => {}, end: () => {} };
    this.backend = backend;
    this.cache = new CacheIndex(backend);
    this.contextDir = contextDir;
    this.options = options;
    this.out = out;
    this.targetPlatform = requestedPlatform(options.platform);
    this.runNetworks = new RunNetworks(backend, options.networkMode || "default", buildNetworksDir(backend.options.root));
    this.bases = new BaseImages(backend, { always: options.pull ?? false, auth: hooks.registryAuth ?? (() => ({})), signal: hooks.cancelled ?? new AbortController().signal, ...(backend.options.registry?.defaultRegistry ? { defaultRegistry: backend.options.registry.defaultRegistry } : {}) });
  }

  /** A base image pull's message, where the step's text goes. */
  private readonly progress = (message: ProgressMessage): void => {
    if (this.options.quiet) return;
    const sink = this.stageSinks.getStore();
    if (sink) sink.write(message);
    else this.out.progress(message);
  };

  private say(text: string): void {
    if (this.options.quiet) return;
    const sink = this.stageSinks.getStore();
    if (sink) sink.write(text);
    else this.out.stream(text);
  }

  /** Runs the build; returns the final image id. Every RUN's process, mount and snapshot is gone when it settles, failed or not; its networks go after (afterOutcome). */
  async run(): Promise<string> {
    try {
      return await this.steps();
    } finally {
      // The lease keeps what the writes need until they are done.
      await Promise.allSettled(this.writes.values());
      await this.leaseId?.then((id) => deleteLease(this.backend.images, id)).catch(() => undefined);
    }
  }

  /**
   * What a build leaves for after its client has the outcome (job.ts), once run() settled:
   * releasing a bridge endpoint costs ~100 ms and its plugin execs each fork the engine on
   * the event loop, which held up the build's reply by 5–12 ms when they ran beside it;
   * and the files the next COPY steps will fill are made again. No later step or build needs
   * the networks gone; a failed refill only leaves the next COPY to make its files.
   */
  afterOutcome(): Promise<void> {
    inodePoolOf(this.backend.options.root).refill().catch((err: Error) => this.backend.log.warn({ err: err.message }, "build inode pool: cannot make files"));
    return this.runNetworks.close().catch((err: Error) => this.backend.log.warn({ err: err.message }, "releasing the RUN steps' networks failed"));
  }

  /**
   * The build's one lease, made as its steps start (steps()): what the steps write stays
   * until the images naming it exist. One lease instead of one per step saves two round trips a step.
   */
  private lease(): Promise<string> {
    this.leaseId ??= createLease(this.backend.images);
    return this.leaseId;
  }

  private async steps(): Promise<string> {
    const { stages, globals, escape, last } = planBuild(this.contextDir, this.options);
    this.escape = escape;
    const automatic = automaticPlatformArgs(this.targetPlatform ?? hostPlatform());
    const declared = new Map<string, string>();
    for (const g of globals) for (const [k, v] of this.argDeclarations(g, new Map([...automatic, ...declared]), automatic)) declared.set(k, v);
    // What FROM lines see, and what a stage's bare `ARG NAME` takes its value from.
    const globalArgs = new Map([...automatic, ...declared]);
    const fromRef = (i: number) => expandText(stages[i]!.from.args.split(/\s+/)[0]!, globalArgs, this.escape);
    // A base's ONBUILD COPY --from may name a stage nothing else needs: planned until no
    // stage to build adds another, each base looked at once.
    const triggers = new Map<number, string[]>();
    let plan = planStages(stages, last, fromRef);
    for (let unseen = plan.order; unseen.length > 0; unseen = plan.order.filter((i) => !triggers.has(i))) {
      for (const i of unseen) triggers.set(i, triggerCopySources(await this.baseTriggers(stages, i, fromRef(i), globalArgs)));
      plan = planStages(stages, last, fromRef, (i) => triggers.get(i) ?? []);
    }
    this.stepCount = plan.order.reduce((n, i) => n + 1 + stages[i]!.steps.length, 0);
    // Made now, while the first steps look the cache up, rather than at the first miss,
    // where its record and round trip (~5–10 ms) held up that step's snapshot.
    if (this.stepCount > plan.order.length) this.lease().catch(() => undefined); // a failure is met again where a step needs it
    const labelStep = Object.keys(this.options.labels).length > 0;
    const built = await this.buildStages(stages, plan, globalArgs, labelStep ? undefined : last);
    let result = built[last]!;
    if (labelStep) {
      const text = `LABEL ${Object.entries(this.options.labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")}`;
      result = await this.metadata(result, text, (config) => (config.Labels = { ...(config.Labels ?? {}), ...this.options.labels }));
    }
    if (!result.id) throw new BuildFailure("No image was generated. Is your Dockerfile empty?");
    const unused = Object.keys(this.options.buildArgs).filter((a) => !this.usedArgs.has(a) && !predefinedArgs.has(a) && !automaticPlatformArgNames.has(a));
    if (unused.length > 0) this.say(`[Warning] One or more build-args [${unused.join(" ")}] were not consumed\n`);
    this.trace.mark("steps");
    await Promise.all(this.writes.values());
    this.trace.mark("writes");
    // Marking the result and moving the tags touch other names: both at once, the tags in turn.
    // A result this build named carries its mark from that write; only one it found needs it now.
    const named = this.made.has(result.id) && (await this.writes.get(result.id)) === true;
    const marked = named && this.madeAsResult === result.id ? Promise.resolve() : markResult(this.backend, result, named);
    const target = result.target!;
    let previous: Promise<unknown> = Promise.resolve();
    const tagged = this.options.tags.map((tag) => {
      const name = normalizeDockerRef(tag);
      const done = previous.then(() => this.tag(name, target)).then(() => name);
      previous = done;
      return done;
    });
    for (const t of tagged) t.catch(() => undefined); // awaited below, after the mark
    await marked;
    this.trace.mark("marked");
    this.out.aux({ ID: result.id });
    this.say(`Successfully built ${shortId(result.id)}\n`);
    // Quiet: the id is the only text (the CLI prints the stream it buffered).
    if (this.options.quiet) this.out.stream(`${result.id}\n`);
    for (const t of tagged) this.say(`Successfully tagged ${familiarRef(await t)}\n`);
    this.trace.mark("tagged");
    return result.id;
  }

  /**
   * The stages the plan needs, each as soon as the stages it uses are built, so independent
   * stages run at once; their output is written in stage order. The first failure stops
   * the other stages at their next step and is the build's error.
   */
  private async buildStages(stages: Stage[], plan: StagePlan, globalArgs: Map<string, string>, resultStage: number | undefined): Promise<BuildImage[]> {
    const output = new OrderedOutput<OutputItem>(plan.order.length, (item) => (typeof item === "string" ? this.out.stream(item) : this.out.progress(item)));
    const results = new Map<number, Promise<BuildImage>>();
    let failure: { error: unknown } | undefined;
    let nextStep = 1;
    for (const [k, i] of plan.order.entries()) {
      const stage = stages[i]!;
      const lines = new GatedOutput<OutputItem>(output.writer(k));
      const sink: StageSink = { write: (item) => lines.push(item), nextStep, stopped: () => failure !== undefined };
      nextStep += 1 + stage.steps.length;
      const deps = plan.deps.get(i)!;
      const run = async (): Promise<BuildImage> => {
        // Only the stages this one uses are visible to it, under the names and indexes they had.
        const built: BuildImage[] = [];
        const names = new Map<string, number>();
        for (const j of deps) {
          built[j] = await results.get(j)!;
          if (stages[j]!.name) names.set(stages[j]!.name!, j);
        }
        built.length = i;
        return this.stageSinks.run(sink, async () => {
          try {
            const state = await this.from(stage, globalArgs, built, names);
            this.trace.mark("from");
            for (const [index, step] of stage.steps.entries()) {
              if (lines.failed) throw lines.failed.error;
              sink.runAhead = stage.steps.slice(index + 1).some((later) => later.keyword === "RUN");
              sink.resultStep = i === resultStage && index === stage.steps.length - 1;
              this.announce(step);
              const parent = state.image;
              state.image = await this.step(step, state, built, names, globalArgs);
              sink.resultStep = false;
              this.trace.mark(`step ${step.keyword}`);
              // A step shown as done has its parent in the cache: a build killed now reruns at
              // most this step. The next steps run meanwhile; their lines wait behind this one.
              const parentWritten = this.writes.get(parent.id);
              if (parentWritten) lines.gate(parentWritten);
              this.say(` ---> ${shortId(state.image.id)}\n`);
            }
            await lines.idle();
            this.trace.mark("stage shown");
            return state.image;
          } finally {
            // A failed step's error comes after the lines of the steps before it.
            await lines.idle().catch(() => undefined);
          }
        });
      };
      const promise = run();
      promise.then(
        () => output.finish(k),
        (error: unknown) => (failure ??= { error }),
      );
      results.set(i, promise);
    }
    await Promise.allSettled(results.values());
    if (failure) {
      output.flushAll();
      throw failure.error;
    }
    const built: BuildImage[] = [];
    for (const [i, promise] of results) built[i] = await promise;
    return built;
  }

  /** Points `name` at `target`; a rebuild that changed nothing leaves the tag alone. */
  private async tag(name: string, target: Descriptor): Promise<void> {
    const current = await storeRecord(this.backend.images, name);
    if (current?.target?.digest !== target.digest) await setName(this.backend.images, name, target, current ?? null);
  }

  /**
   * A new snapshot `key` (read-only: a view) on the image's top layer. The prepare is tried
   * first: the layer is there unless the image was never unpacked (a step commits its own),
   * and only a missing one costs the look and the unpack.
   */
  private async prepareOn(image: BuildImage, key: string, lease: string, readOnly = false): Promise<Mount[]> {
    const prepare = (parent: string) => prepareRootfs(this.backend.images.snapshots, { namespace: this.backend.namespace, snapshotter, key, parent, lease, ...(readOnly ? { readOnly } : {}) });
    const top = chainId(image.document.rootfs?.diff_ids ?? []);
    if (top) {
      try {
        return await prepare(top);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return prepare(await this.unpacked(image, lease));
  }

  /** The image's top snapshot, unpacking it unless a step (or an earlier unpack) left it there. */
  private async unpacked(image: BuildImage, lease: string): Promise<string> {
    const top = chainId(image.document.rootfs?.diff_ids ?? []);
    if (!top) return "";
    try {
      await this.backend.images.snapshots.stat({ snapshotter, key: top }, this.backend.call(lease));
      return top;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (!image.target) throw serverError(`image ${image.id} has no stored manifest to unpack`);
    return (await unpackImage(this.backend.images, image.target, { snapshotter, lease })).chainId;
  }

  private announce(step: Instruction): void {
    if (this.out.closed()) throw new BuildFailure("the client closed the connection: build cancelled");
    const sink = this.stageSinks.getStore();
    if (sink?.stopped()) throw new BuildFailure("another stage failed: build cancelled");
    const number = sink ? sink.nextStep++ : ++this.stepNumber;
    this.say(`Step ${number}/${this.stepCount} : ${step.original}\n`);
  }

  private async from(stage: Stage, globalArgs: Map<string, string>, built: BuildImage[], names: Map<string, number>): Promise<StageState> {
    this.announce(stage.from);
    const ref = expandText(stage.from.args.split(/\s+/)[0]!, globalArgs, this.escape);
    const platform = this.stagePlatform(stage, globalArgs);
    let image: BuildImage;
    const earlier = names.get(ref.toLowerCase());
    // An earlier stage is what it is, whatever platform this FROM names (as Docker).
    if (earlier !== undefined) image = built[earlier]!;
    else if (ref === "scratch") image = scratchImage(platform);
    else {
      try {
        image = await this.bases.load(ref, platform, this.progress);
      } catch (err) {
        throw new BuildFailure(err instanceof PlatformMismatch ? err.message : httpErrorOf(err).message);
      }
    }
    const state: StageState = { image, args: new Map() };
    await this.runTriggers(state, built, names, globalArgs);
    this.say(state.image.id ? ` ---> ${shortId(state.image.id)}\n` : " ---> \n");
    return state;
  }

  /** The platform a stage's FROM selects: its --platform, else the request's (undefined: this host's). */
  private stagePlatform(stage: Stage, globalArgs: Map<string, string>): Platform | undefined {
    const text = stage.from.flags.get("platform");
    if (text === undefined) return this.targetPlatform;
    try {
      return fromPlatform(expandText(text, globalArgs, this.escape));
    } catch (err) {
      throw new BuildFailure((err as Error).message);
    }
  }

  /**
   * The ONBUILD triggers stage i's base will run: an earlier stage's are its own ONBUILD
   * steps (its base's ran and were cleared), an image's are in its config. A base that
   * cannot be loaded has none here; its FROM reports why when the stage runs.
   */
  private async baseTriggers(stages: Stage[], i: number, ref: string, globalArgs: Map<string, string>): Promise<string[]> {
    const lower = ref.toLowerCase();
    for (let j = i - 1; j >= 0; j--) if (stages[j]!.name === lower) return stages[j]!.steps.filter((s) => s.keyword === "ONBUILD").map((s) => s.args);
    if (ref === "scratch") return [];
    try {
      // A missing base is pulled here, its progress shown as it comes (before the steps: their count needs these triggers).
      const onBuild = (await this.bases.load(ref, this.stagePlatform(stages[i]!, globalArgs), this.progress)).document.config?.OnBuild;
      return Array.isArray(onBuild) ? onBuild.map(String) : [];
    } catch {
      return [];
    }
  }

  /**
   * The base image's ONBUILD triggers, run right after FROM as Docker does (no Step lines
   * of their own), on a config with OnBuild cleared so the result does not inherit them.
   */
  private async runTriggers(state: StageState, built: BuildImage[], names: Map<string, number>, globals: Map<string, string>): Promise<void> {
    const triggers = state.image.document.config?.OnBuild;
    if (!Array.isArray(triggers) || triggers.length === 0) return;
    this.say(`# Executing ${triggers.length} build trigger${triggers.length > 1 ? "s" : ""}\n`);
    const document = structuredClone(state.image.document);
    delete document.config!.OnBuild;
    state.image = { ...state.image, document };
    this.triggersCleared.add(state.image);
    for (const trigger of triggers) {
      let instructions: Instruction[];
      try {
        instructions = parseDockerfile(String(trigger)).instructions;
      } catch (err) {
        throw new BuildFailure(`the base image's ONBUILD trigger ${JSON.stringify(trigger)} does not parse: ${httpErrorOf(err).message}`);
      }
      if (instructions.length !== 1) throw new BuildFailure(`the base image's ONBUILD trigger ${JSON.stringify(trigger)} should be a single expression`);
      const instruction = instructions[0]!;
      if (["ONBUILD", "FROM", "MAINTAINER"].includes(instruction.keyword)) throw new BuildFailure(`${instruction.keyword} isn't allowed as an ONBUILD trigger`);
      state.image = await this.step(instruction, state, built, names, globals);
    }
  }

  /** An ARG's declarations with their values: a --build-arg wins, then the default, then a global's. */
  private argDeclarations(step: Instruction, vars: ReadonlyMap<string, string>, globals?: ReadonlyMap<string, string>): [string, string][] {
    const out: [string, string][] = [];
    for (const word of processWords(step.args, vars, this.escape, true)) {
      const eq = word.indexOf("=");
      const name = eq < 0 ? word : word.slice(0, eq);
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw badRequest(`dockerfile parse error on line ${step.line}: invalid ARG name ${JSON.stringify(name)}`);
      const given = this.options.buildArgs[name];
      this.usedArgs.add(name);
      const value = given ?? (eq >= 0 ? word.slice(eq + 1) : globals?.get(name));
      if (value !== undefined) out.push([name, value]);
    }
    return out;
  }

  /** Variables a step's arguments see: the stage's ARGs, overridden by the image's ENV. */
  private vars(state: StageState): Map<string, string> {
    const vars = new Map(state.args);
    for (const entry of state.image.document.config?.Env ?? []) {
      const eq = entry.indexOf("=");
      vars.set(eq < 0 ? entry : entry.slice(0, eq), eq < 0 ? "" : entry.slice(eq + 1));
    }
    return vars;
  }

  private async step(step: Instruction, state: StageState, built: BuildImage[], names: Map<string, number>, globals: Map<string, string>): Promise<BuildImage> {
    const vars = this.vars(state);
    const image = state.image;
    const word = (text: string) => expandText(text, vars, this.escape);
    const jsonOrShell = (): string[] => step.json ?? [...(image.document.config?.Shell ?? defaultShell), step.args];
    switch (step.keyword) {
      case "RUN":
        if (step.heredocs) return this.heredocRunStep(step, state);
        return this.runStep(step, state, jsonOrShell());
      case "COPY":
      case "ADD":
        return this.copyStep(step, state, vars, built, names);
      case "ENV": {
        const pairs = keyValues(step.args, vars, this.escape, true);
        return this.metadata(image, `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(" ")}`, (c) => {
          for (const [k, v] of pairs) c.Env = mergeEnv(c.Env ?? [], [`${k}=${v}`]);
        });
      }
      case "LABEL": {
        const pairs = keyValues(step.args, vars, this.escape, false);
        return this.metadata(image, `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(" ")}`, (c) => (c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(pairs) }));
      }
      case "MAINTAINER":
        return this.metadata(image, `MAINTAINER ${step.args}`, (_c, doc) => (doc.author = step.args));
      case "ARG": {
        const declared = this.argDeclarations(step, vars, globals);
        for (const [k, v] of declared) state.args.set(k, v);
        // As Docker records it: each name with its default, expanded and unquoted (not a --build-arg's value).
        return this.metadata(image, `ARG ${processWords(step.args, vars, this.escape, true).join(" ")}`, () => {});
      }
      case "WORKDIR": {
        const dir = posix.resolve(image.document.config?.WorkingDir || "/", word(step.args));
        return this.metadata(image, `WORKDIR ${dir}`, (c) => (c.WorkingDir = dir));
      }
      case "USER": {
        const user = word(step.args);
        return this.metadata(image, `USER ${user}`, (c) => (c.User = user));
      }
      case "EXPOSE": {
        const words = processWords(step.args, vars, this.escape, true);
        const ports = words.map((p) => (p.includes("/") ? p.toLowerCase() : `${p}/tcp`));
        for (const p of ports) if (!/^\d+(-\d+)?\/(tcp|udp|sctp)$/.test(p)) throw new BuildFailure(`invalid containerPort: ${p}`);
        return this.metadata(image, `EXPOSE ${words.join(" ")}`, (c) => (c.ExposedPorts = { ...(c.ExposedPorts ?? {}), ...Object.fromEntries(ports.map((p) => [p, {}])) }));
      }
      case "VOLUME": {
        const volumes = step.json ?? processWords(step.args, vars, this.escape, true);
        return this.metadata(image, `VOLUME [${volumes.join(" ")}]`, (c) => (c.Volumes = { ...(c.Volumes ?? {}), ...Object.fromEntries(volumes.map((v) => [v, {}])) }));
      }
      case "STOPSIGNAL": {
        const signal = word(step.args);
        try {
          parseSignal(signal);
        } catch (err) {
          throw new BuildFailure((err as Error).message);
        }
        return this.metadata(image, `STOPSIGNAL ${signal}`, (c) => (c.StopSignal = signal));
      }
      case "SHELL": {
        if (!step.json || step.json.length === 0) throw new BuildFailure("SHELL requires the arguments to be in JSON form");
        const shell = step.json;
        return this.metadata(image, `SHELL [${shell.join(" ")}]`, (c) => (c.Shell = shell));
      }
      case "CMD": {
        const cmd = jsonOrShell();
        return this.metadata(image, `CMD ${goQuotedList(cmd)}`, (c) => (c.Cmd = cmd));
      }
      case "ENTRYPOINT": {
        const entrypoint = step.args === "" ? null : jsonOrShell();
        return this.metadata(image, `ENTRYPOINT ${goQuotedList(entrypoint ?? [])}`, (c) => {
          c.Entrypoint = entrypoint;
          // As Docker: a new ENTRYPOINT drops the CMD an earlier stage or image set.
          c.Cmd = null;
        });
      }
      case "ONBUILD": {
        const trigger = step.args;
        return this.metadata(image, `ONBUILD ${trigger}`, (c) => (c.OnBuild = [...((c.OnBuild as string[] | undefined) ?? []), trigger]));
      }
      case "HEALTHCHECK": {
        const health = parseHealthcheck(step.args, step.flags);
        const old = image.document.config?.Healthcheck as { Test?: string[] } | undefined;
        if (old?.Test && old.Test.length > 0 && old.Test[0] !== "NONE") this.say(`Note that overriding the HEALTHCHECK will be ignored, old HEALTHCHECK was: [${old.Test.join(" ")}]\n`);
        return this.metadata(image, healthcheckHistory(health), (c) => (c.Healthcheck = health));
      }
      default:
        throw new BuildFailure(`unknown instruction: ${step.keyword}`);
    }
  }

  /** The step's cache key: its parent image and what it does. */
  private key(parent: BuildImage, text: string): string {
    // A base whose triggers ran has its OnBuild cleared: steps on it make other images than on the base itself.
    const parentKey = this.triggersCleared.has(parent) ? `${parent.id} onbuild-cleared` : parent.id;
    return createHash("sha256").update(`${parentKey}\n${text}`).digest("hex");
  }

  /** Starts storing `image` (see writes) and returns it with its id. */
  private madeHere(lease: string, image: BuildImage, key: string, layerStored?: Promise<unknown>): BuildImage {
    // `image` is still its parent with the new document: its id is the parent's.
    const inherited = this.layerStores.get(image.id);
    const stores = layerStored && inherited ? Promise.all([inherited, layerStored]) : (layerStored ?? inherited);
    const result = this.stageSinks.getStore()?.resultStep === true;
    const { image: made, written } = storeImageLater(this.backend, lease, image, key, stores, result);
    if (result) this.madeAsResult = made.id;
    if (stores) this.layerStores.set(made.id, stores);
    written.catch(() => undefined); // awaited later; not an unhandled rejection meanwhile
    this.writes.set(made.id, written);
    this.made.add(made.id);
    return made;
  }

  private async cached(parent: BuildImage, text: string): Promise<BuildImage | undefined> {
    // A parent this build just made has no cached children anywhere: no lookup to make.
    const hit = this.options.noCache || this.made.has(parent.id) ? undefined : await this.cache.find(this.key(parent, text));
    if (hit) {
      this.say(" ---> Using cache\n");
      recordCacheUse(this.backend, hit);
    } else if (this.stageSinks.getStore()?.runAhead) {
      // Every later step of the stage misses too: its RUN's namespace is made while this step runs.
      this.runNetworks.prepare();
    }
    return hit;
  }

  private async metadata(parent: BuildImage, text: string, change: (config: NonNullable<ImageDocument["config"]>, doc: ImageDocument) => void): Promise<BuildImage> {
    const createdBy = `/bin/sh -c #(nop)  ${text}`;
    const hit = await this.cached(parent, createdBy);
    if (hit) return hit;
    const document = structuredClone(parent.document);
    document.config ??= {};
    change(document.config, document);
    const now = new Date().toISOString();
    document.created = now;
    document.history = [...(document.history ?? []), { created: now, created_by: createdBy, empty_layer: true }];
    return this.madeHere(await this.lease(), { ...parent, document }, this.key(parent, createdBy));
  }

  /**
   * A RUN's or COPY's result: the layer diffed from the step's snapshot, the image it
   * makes, and the snapshot committed under the image's chain id, so the next step starts
   * from it instead of unpacking the layer just made. `committed` is false when the commit
   * did not take (the caller then removes the snapshot). `readHere`: the engine reads a
   * small layer itself (commitOwnLayer) instead of asking the diff service.
   */
  private async commitStep(parent: BuildImage, key: string, mounts: Mount[], createdBy: string, cacheKey: string, lease: string, readHere = false): Promise<{ image: BuildImage; committed: boolean }> {
    const own = readHere ? await ownLayer(mounts, layerMediaType) : undefined;
    if (own) return this.commitOwnLayer(parent, key, own, createdBy, cacheKey, lease);
    const layer = await stepLayer(this.backend, snapshotter, key, mounts, lease, layerMediaType);
    this.trace.mark("diff");
    const image = await this.withLayer(parent, layer, createdBy, cacheKey, lease);
    const committed = await this.backend.images.snapshots.commit({ snapshotter, name: chainId(image.document.rootfs!.diff_ids), key, labels: {} }, this.backend.call(lease)).then(
      () => true,
      () => false,
    );
    this.trace.mark("commit");
    return { image, committed };
  }

  /**
   * commitStep with a layer read in the engine (step-layer.ts ownLayer): its digest names
   * the snapshot's chain id before the blob is stored, so the next step starts from the
   * committed snapshot while the content store writes (and fsyncs) the blob, 14–76 ms
   * under load. The step's image is named only once its layer is stored, and the build
   * waits for both (writes); a snapshot committed for a layer that could not be stored
   * is removed again.
   */
  private async commitOwnLayer(parent: BuildImage, key: string, own: OwnLayer, createdBy: string, cacheKey: string, lease: string): Promise<{ image: BuildImage; committed: boolean }> {
    this.trace.mark("layer read");
    const name = chainId([...(parent.document.rootfs?.diff_ids ?? []), own.digest]);
    const call = this.backend.call(lease);
    const committing = this.backend.images.snapshots.commit({ snapshotter, name, key, labels: {} }, call).then(
      () => true,
      () => false,
    );
    const stored = storeOwnLayer(this.backend, own, lease).catch(async (err: unknown) => {
      if (await committing) await this.backend.images.snapshots.remove({ snapshotter, key: name }, call).catch(() => undefined);
      throw err;
    });
    stored.catch(() => undefined); // awaited with the image's writes; not an unhandled rejection meanwhile
    // The image's config and manifest go to the content store while the snapshot commits:
    // the writes a stage's end waits for start ~10 ms sooner, and fewer of them meet there.
    const imaging = this.withLayer(parent, { mediaType: own.mediaType, digest: own.digest, size: own.bytes.length }, createdBy, cacheKey, lease, stored);
    imaging.catch(() => undefined); // awaited below, once the commit settled
    const committed = await committing;
    const image = await imaging;
    this.trace.mark("commit");
    return { image, committed };
  }

  /** A new image with `layer` on top of `parent`. */
  private async withLayer(parent: BuildImage, layer: LayerDescriptor, createdBy: string, key: string, lease: string, layerStored?: Promise<unknown>): Promise<BuildImage> {
    // An uncompressed layer is its own diff: no round trip to read the label the diff service wrote.
    const diffId = layer.mediaType === mediaTypes.ociLayer || layer.mediaType === mediaTypes.dockerLayer ? layer.digest : (await blobInfo(this.backend.images.content, layer.digest, this.backend.call(lease)))?.labels[wellKnown.uncompressed];
    if (!diffId) throw serverError(`the diff service stored layer ${layer.digest} without its uncompressed digest`);
    const document = structuredClone(parent.document);
    const now = new Date().toISOString();
    document.created = now;
    document.rootfs = { type: "layers", diff_ids: [...(document.rootfs?.diff_ids ?? []), diffId] };
    document.history = [...(document.history ?? []), { created: now, created_by: createdBy }];
    const mediaType = parent.manifestType === mediaTypes.dockerManifest ? (layer.mediaType === mediaTypes.ociLayer ? mediaTypes.dockerLayer : mediaTypes.dockerLayerGzip) : layer.mediaType;
    return this.madeHere(lease, { ...parent, document, layers: [...parent.layers, { mediaType, digest: layer.digest, size: layer.size }] }, key, layerStored);
  }

  /** A RUN with heredocs: a `#!` body is a host file the container sees read-only where the command runs it. */
  private async heredocRunStep(step: Instruction, state: StageState): Promise<BuildImage> {
    const run = heredocRun(step, state.image.document.config?.Shell ?? defaultShell);
    const script = run.script ? writeScript(run.script.content) : undefined;
    try {
      return await this.runStep(step, state, run.command, run, script ? [`${script.path}:${run.script!.path}:ro`] : undefined);
    } finally {
      script?.remove();
    }
  }

  private async runStep(step: Instruction, state: StageState, command: string[], heredoc?: HeredocRun, binds?: string[]): Promise<BuildImage> {
    const parent = state.image;
    if (!parent.id) throw new BuildFailure("RUN needs a base image with a shell: FROM scratch has none");
    const foreign = cannotRunHere(documentPlatform(parent.document));
    if (foreign) throw new BuildFailure(`RUN ${command.join(" ")}: ${foreign}`);
    const env = mergeEnv([...state.args].map(([k, v]) => `${k}=${v}`), parent.document.config?.Env ?? []);
    // As Docker records them: sorted, and without the args an ENV of the same name hides.
    const envNames = new Set((parent.document.config?.Env ?? []).map((e) => e.split("=", 1)[0]));
    const recorded = [...state.args].filter(([k]) => !envNames.has(k)).map(([k, v]) => `${k}=${v}`).sort();
    const argText = recorded.length > 0 ? `|${recorded.length} ${recorded.join(" ")} ` : "";
    const createdBy = `${argText}${heredoc?.createdBy ?? command.join(" ")}`;
    const hit = await this.cached(parent, createdBy);
    if (hit) return hit;
    const config = parent.document.config ?? {};
    // No container record is made for a RUN: the id shown is the run's own (runc's id and
    // its cgroup's name), where Docker shows the intermediate container's.
    const id = newRunId();
    this.say(` ---> Running in ${shortId(id)}\n`);
    const scratch = this.hooks.scratchDir ?? tmpdir();
    // Made (when no earlier RUN's is free) while the step's rootfs is prepared: a veth and an address cost several plugin execs.
    const networking = this.runNetworks.acquire(id);
    networking.catch(() => undefined); // awaited below; not an unhandled rejection if the rootfs fails first
    // A network that could not be set up is the step's error (thrown where it is awaited); only a made one is released.
    let released: Promise<void> | undefined;
    const releaseNetwork = () =>
      (released ??= networking.then(
        (network) => network.release().catch((err: Error) => this.backend.log.warn({ run: id, err: err.message }, "releasing a RUN's network failed")),
        () => undefined,
      ));
    try {
      return await withLease(this.backend.images, await this.lease(), async (lease) => {
        const key = `build-run-${id.slice(0, 24)}`;
        let committed = false;
        const mounts = await this.prepareOn(parent, key, lease);
        this.trace.mark("run prepare");
        try {
          const network = await networking;
          this.trace.mark("run network");
          let mountPoints: string[] = [];
          let exitCode: number;
          try {
            exitCode = await runProcess({
              runcRoot: runcRootOf(scratch),
              bundle: join(scratch, `run-${id.slice(0, 24)}`),
              id,
              rootfs: unsynced(mounts),
              spec: (rootfs) => {
                const spec = this.runSpec(id, command, env, config, rootfs, network, binds);
                mountPoints = (spec.mounts ?? []).map((m) => m.destination);
                return spec;
              },
              output: (text) => this.say(text),
              mark: (phase) => this.trace.mark(phase),
              ...(this.hooks.cancelled ? { signal: this.hooks.cancelled } : {}),
            });
          } catch (err) {
            if (err instanceof RunStartError) throw new BuildFailure(`The command '${command.join(" ")}' could not run: ${err.message}`, startFailureCode(err.message));
            throw err;
          } finally {
            // The run is over: its namespace is free for the build's next RUN while the layer is diffed.
            void releaseNetwork();
          }
          this.trace.mark("run cleanup");
          if (exitCode !== 0) {
            throw new BuildFailure(`The command '${command.join(" ")}' returned a non-zero code: ${exitCode}`, exitCode);
          }
          removeRunMountPoints(mounts, mountPoints);
          const made = await this.commitStep(parent, key, mounts, createdBy, this.key(parent, createdBy), lease, true);
          committed = made.committed;
          return made.image;
        } finally {
          if (!committed) await this.backend.images.snapshots.remove({ snapshotter, key }, this.backend.call(lease)).catch(() => undefined);
        }
      });
    } finally {
      await releaseNetwork();
      this.say(`Removing intermediate container ${shortId(id)}\n`);
    }
  }

  /** The spec of a RUN's process: a container's on the build's network (run-network.ts), the image's env, user and workdir. */
  private runSpec(id: string, command: string[], env: string[], config: NonNullable<ImageDocument["config"]>, rootfs: string, network: RunNetwork, binds: string[] | undefined) {
    let user: OciUser = { uid: 0, gid: 0 };
    if (config.User) {
      try {
        user = resolveUser(config.User, rootfs);
      } catch (err) {
        throw new BuildFailure(`unable to find user ${config.User}: ${(err as Error).message.replace(/: invalid argument$/, "")}`);
      }
    }
    const hostname = id.slice(0, 12);
    const runConfig: ContainerConfig = { Cmd: command, Entrypoint: [], Env: env, WorkingDir: config.WorkingDir ?? "", Hostname: hostname };
    const host: HostConfig = { ...(binds ? { Binds: binds } : {}) };
    return buildSpec({ namespace: this.backend.namespace, id, config: runConfig, host, user, network: network.mode, ...(network.files ? { files: network.files } : {}) });
  }

  private async copyStep(step: Instruction, state: StageState, vars: Map<string, string>, built: BuildImage[], names: Map<string, number>): Promise<BuildImage> {
    const parent = state.image;
    const words = step.json ?? processWords(step.args, vars, this.escape, true);
    if (words.length < 2) throw new BuildFailure(`${step.keyword} requires at least two arguments, but only one was provided. Destination could not be determined.`);
    const sourceNames = words.slice(0, -1).filter((w) => !isHeredocWord(w, step));
    const sourceCount = words.length - 1;
    const workdir = parent.document.config?.WorkingDir || "/";
    const destGiven = words.at(-1)!;
    const dest = posix.resolve(workdir, destGiven) + (destGiven.endsWith("/") || destGiven.endsWith("/.") ? "/" : "");
    const chown = step.flags.get("chown") ? expandText(step.flags.get("chown")!, vars, this.escape) : undefined;
    const chmodText = step.flags.get("chmod");
    if (chmodText !== undefined && !/^[0-7]{3,4}$/.test(chmodText)) throw new BuildFailure(`invalid chmod parameter: ${chmodText} (an octal mode like 755)`);
    const mode = chmodText === undefined ? undefined : parseInt(chmodText, 8);
    for (const s of sourceNames) {
      if (/^[a-z]+:\/\//i.test(s)) throw new BuildFailure(`${step.keyword} of a URL is not supported: Berth builds have no network access (${s}); download it into the context instead`);
    }
    const fromFlag = step.flags.get("from");
    if (fromFlag && step.heredocs) throw new BuildFailure(`${step.keyword} --from cannot copy heredocs: their files come from the Dockerfile, not from ${fromFlag}`);
    const inline = step.heredocs ? heredocSources(step, vars, this.escape) : undefined;
    return this.withSourceRoot(fromFlag, built, names, async (root, rootKey, what) => {
      const selected: Selected[] = [];
      for (const s of sourceNames) selected.push(...selectSources(root, s, what));
      for (const name of inline?.names ?? []) selected.push(...selectSources(inline!.dir, name, "heredoc"));
      this.trace.mark("copy select");
      const hash = rootKey ?? (await hashSources(selected, digestsOf(root)));
      this.trace.mark("copy hash");
      const flagText = [...step.flags].map(([k, v]) => `--${k}=${v}`).join(" ");
      const createdBy = `/bin/sh -c #(nop) ${step.keyword} ${flagText ? `${flagText} ` : ""}${selected.length === 1 && selected[0]!.stat.isFile() ? "file" : "dir"}:${hash} in ${dest} `;
      const keyText = `${createdBy}\n${fromFlag ? sourceNames.join("\n") : ""}`;
      const hit = await this.cached(parent, keyText);
      if (hit) return hit;
      const destIsDir = dest.endsWith("/") || selected.length > 1 || sourceCount > 1;
      // A file that alone fills the most the engine reads itself: the diff service makes the layer at once.
      const readHere = !selected.some((s) => s.stat.isFile() && s.stat.size >= ownLayerLimit);
      return withLease(this.backend.images, await this.lease(), async (lease) => {
        const key = `build-copy-${randomBytes(8).toString("hex")}`;
        let committed = false;
        const mounts = await this.prepareOn(parent, key, lease);
        this.trace.mark("copy prepare");
        const target = await mkdtemp(join(this.hooks.scratchDir ?? tmpdir(), "berth-build-"));
        try {
          const owner: Owner | undefined = chown ? await userInRootfs(mounts, chown).catch((err: Error) => {
            throw new BuildFailure(`unable to convert uid/gid chown string to host mapping: ${err.message}`);
          }) : fromFlag ? undefined : { uid: 0, gid: 0 };
          await mountAll(unsynced(mounts), target);
          this.trace.mark("copy mount");
          const pool = inodePoolOf(this.backend.options.root);
          const placer = upperPlacer(target, mounts, pool);
          try {
            await this.copyInto(target, selected, dest, destIsDir, owner, mode, step.keyword === "ADD" && !fromFlag, placer);
            this.trace.mark(placer ? `copy files ${placer.placed}/${placer.asked}` : "copy files");
          } finally {
            if (placer) pool.wanted(placer.asked);
            await unmountAll(target, { detachBusy: true });
            this.trace.mark("copy unmount");
          }
          const made = await this.commitStep(parent, key, mounts, createdBy, this.key(parent, keyText), lease, readHere);
          committed = made.committed;
          return made.image;
        } finally {
          if (!committed) await this.backend.images.snapshots.remove({ snapshotter, key }, this.backend.call(lease)).catch(() => undefined);
          await rm(target, { recursive: true, force: true });
        }
      });
    }).finally(() => inline?.remove());
  }

  private async copyInto(root: string, selected: Selected[], dest: string, destIsDir: boolean, owner: Owner | undefined, mode: number | undefined, unpack: boolean, placer: UpperPlacer | undefined): Promise<void> {
    if (destIsDir) {
      const dir = destinationIn(root, dest);
      mkdirSync(dir, { recursive: true });
    } else {
      mkdirSync(destinationIn(root, posix.dirname(dest)), { recursive: true });
    }
    for (const s of selected) {
      if (s.stat.isDirectory()) {
        const dir = destinationIn(root, dest);
        mkdirSync(dir, { recursive: true });
        copyTree(s.host, s.stat, dir, owner, mode, root, placer);
        continue;
      }
      const format = unpack && s.stat.isFile() ? await archiveFormat(s.host).catch((err: Error) => {
        throw new BuildFailure(`ADD ${s.relative}: ${err.message}`);
      }) : undefined;
      if (format) {
        const dir = destinationIn(root, dest);
        mkdirSync(dir, { recursive: true });
        await unpackArchive(s.host, format, dir).catch((err: Error) => {
          throw new BuildFailure(`ADD ${s.relative}: cannot unpack the archive: ${err.message}`);
        });
        continue;
      }
      const into = destinationIn(root, dest);
      const isDir = destIsDir || (existsSync(into) && lstatSync(into).isDirectory());
      copyTree(s.host, s.stat, isDir ? join(into, posix.basename(s.relative)) : into, owner, mode, root, placer);
    }
  }

  /** Runs `fn` with the root sources come from: the context, or a read-only view of a stage's or image's rootfs. */
  private async withSourceRoot<T>(from: string | undefined, built: BuildImage[], names: Map<string, number>, fn: (root: string, rootKey: string | undefined, what: string) => Promise<T>): Promise<T> {
    if (!from) return fn(this.contextDir, undefined, "build context or excluded by .dockerignore");
    // built.length is the current stage's index: a number from there on is no earlier stage (Docker's words).
    if (/^\d+$/.test(from) && Number(from) >= built.length) {
      throw new BuildFailure(`invalid from flag value ${from}: ${Number(from) === built.length ? "refers to current build stage" : "index out of bounds"}`);
    }
    const index = names.get(from.toLowerCase()) ?? (/^\d+$/.test(from) ? Number(from) : undefined);
    let image: BuildImage;
    if (index !== undefined) {
      if (!built[index]) throw new BuildFailure(`invalid from flag value ${from}: stage ${from} was not scheduled by this build (an ONBUILD trigger named it after planning)`);
      image = built[index];
    }
    else {
      try {
        image = await this.bases.load(from, this.targetPlatform, this.progress);
      } catch (err) {
        throw new BuildFailure(`invalid from flag value ${from}: ${err instanceof PlatformMismatch ? err.message : httpErrorOf(err).message}`);
      }
    }
    if (!image.id) throw new BuildFailure(`COPY --from=${from}: the stage has no files (FROM scratch with no steps)`);
    return withLease(this.backend.images, await this.lease(), async (lease) => {
      const key = `build-from-${randomBytes(8).toString("hex")}`;
      const mounts = await this.prepareOn(image, key, lease, true);
      const root = await mkdtemp(join(this.hooks.scratchDir ?? tmpdir(), "berth-build-from-"));
      try {
        await mountAll(mounts, root);
        try {
          return await fn(root, image.id, `stage ${from}`);
        } finally {
          await unmountAll(root, { detachBusy: true });
        }
      } finally {
        await this.backend.images.snapshots.remove({ snapshotter, key }, this.backend.call(lease)).catch(() => undefined);
        await rm(root, { recursive: true, force: true });
      }
    });
  }
}

/** Go's %q of a string slice, as Docker's history shows CMD and ENTRYPOINT: `["sh" "-c" "x"]`. */
function goQuotedList(list: readonly string[]): string {
  return `[${list.map((item) => JSON.stringify(item)).join(" ")}]`;
}

/** Build args Docker accepts without an ARG (proxy settings). */
const predefinedArgs = new Set(["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"]);

/** The code and message a failed build reports in its stream (the CLI exits with the code). */
export function failureOf(err: unknown): { code: number; message: string } {
  if (err instanceof BuildFailure) return { code: err.code, message: err.message };
  return { code: 1, message: httpErrorOf(err).message };
}
