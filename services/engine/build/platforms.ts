// Platforms in a build: the target platform a build asks for (the /build `platform`
// query, else this host), the platform a FROM asks for (`--platform=`), the automatic
// platform ARGs a Dockerfile can use, and whether this host can run a stage's image (no
// emulation here: a foreign stage can be copied from, never RUN in).
import { formatPlatform, hostPlatform, normalizePlatform, onlyPlatform, parsePlatform, PlatformError, type Platform } from "../../../core/image/platform.ts";
import { badRequest } from "../http.ts";

/** The /build `platform` query: the platform of every FROM without its own; this host when absent. */
export function requestedPlatform(text: string | null | undefined): Platform | undefined {
  if (!text) return undefined;
  let platform: Platform;
  try {
    platform = parsePlatform(text);
  } catch (err) {
    if (err instanceof PlatformError) throw badRequest(`invalid platform ${JSON.stringify(text)}: ${err.message}`);
    throw err;
  }
  if (platform.os !== "linux") throw badRequest(`invalid platform ${JSON.stringify(text)}: Berth builds only linux images, not ${platform.os}`);
  return platform;
}

/**
 * The platform ARGs BuildKit defines in the global scope (Docker's classic builder
 * defines none, so a Dockerfile written for BuildKit's `FROM --platform=$BUILDPLATFORM`
 * would fail there on an empty platform): usable in FROM lines, and in a stage after a
 * bare `ARG NAME`, as BuildKit scopes them.
 */
export function automaticPlatformArgs(target: Platform, build: Platform = hostPlatform()): Map<string, string> {
  const args = new Map<string, string>();
  for (const [prefix, p] of [["BUILD", normalizePlatform(build)], ["TARGET", normalizePlatform(target)]] as const) {
    args.set(`${prefix}PLATFORM`, formatPlatform(p));
    args.set(`${prefix}OS`, p.os);
    args.set(`${prefix}ARCH`, p.architecture);
    args.set(`${prefix}VARIANT`, p.variant ?? "");
  }
  return args;
}

/** The names automaticPlatformArgs defines (a --build-arg of one is never "not consumed"). */
export const automaticPlatformArgNames = new Set(automaticPlatformArgs(hostPlatform()).keys());

/** A FROM's `--platform=` value after ARG substitution; a BuildFailure-worthy message when it does not parse. */
export function fromPlatform(text: string): Platform {
  if (text === "") throw new PlatformError(`failed to parse platform : the --platform value is empty (an ARG it names has no value?)`);
  let platform: Platform;
  try {
    platform = parsePlatform(text);
  } catch (err) {
    throw new PlatformError(`failed to parse platform ${text}: ${(err as Error).message}`);
  }
  if (platform.os !== "linux") throw new PlatformError(`platform ${text} is not supported: Berth builds only linux images`);
  return platform;
}

/** The platform an image config declares; undefined when it names none. */
export function documentPlatform(document: { os?: string; architecture?: string; variant?: unknown }): Platform | undefined {
  if (!document.os || !document.architecture) return undefined;
  return normalizePlatform({ os: document.os, architecture: document.architecture, ...(typeof document.variant === "string" && document.variant ? { variant: document.variant } : {}) });
}

/** Why this host cannot run an image of `platform` (a RUN step in it), or undefined when it can. */
export function cannotRunHere(platform: Platform | undefined): string | undefined {
  if (!platform) return undefined;
  const host = hostPlatform();
  if (onlyPlatform(host).match(platform)) return undefined;
  return `the stage's image is for platform ${formatPlatform(platform)}, which this host (${formatPlatform(host)}) cannot run: Berth has no emulation. A stage of another platform can only be copied from (COPY --from)`;
}
