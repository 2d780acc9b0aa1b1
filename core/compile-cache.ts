// Node's on-disk compile cache for our bundles: a short-lived CLI spends most of its
// start compiling the bundle, and the cache turns that into a read of V8's code
// cache. The directory is per user and private (root: /var/cache/berth; others:
// $XDG_CACHE_HOME or ~/.cache), because whoever can write it decides what code runs.
// Every failure only means running without the cache.
import { lstatSync, mkdirSync } from "node:fs";
import { enableCompileCache } from "node:module";
import { isAbsolute, join } from "node:path";

/** Where a user's cache goes; relative $XDG_CACHE_HOME and $HOME are ignored, as the XDG spec says. */
export function compileCacheDir(uid: number | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (uid === 0) return "/var/cache/berth/compile";
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, "berth", "compile");
  const home = env.HOME;
  return home && isAbsolute(home) ? join(home, ".cache", "berth", "compile") : undefined;
}

/** Whether `dir` is a directory only this user can write to; created 0700 when missing. */
export function isPrivateDir(dir: string): boolean {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o022) === 0;
}

/**
 * The environment that gives a Node child process the same cache from its first module
 * on: a service's entry is one large bundle, compiled before any code of its own could
 * turn the cache on. Empty when there is no private directory (the child runs uncached).
 */
export function compileCacheEnv(dir = compileCacheDir(process.getuid?.(), process.env)): { NODE_COMPILE_CACHE?: string } {
  try {
    return dir && isPrivateDir(dir) ? { NODE_COMPILE_CACHE: dir } : {};
  } catch {
    return {};
  }
}

/** Turns the compile cache on for modules loaded from now on; NODE_DISABLE_COMPILE_CACHE=1 turns it off. */
export function useCompileCache(): void {
  try {
    const dir = compileCacheDir(process.getuid?.(), process.env);
    if (dir && isPrivateDir(dir)) enableCompileCache(dir);
  } catch {
    // a read-only or foreign cache directory: run uncached
  }
}
