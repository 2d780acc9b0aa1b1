// Platforms as containerd's platforms package handles them: parsing the
// `os/arch[/variant]` specifier, normalising aliases (x86_64 → amd64, aarch64 →
// arm64), and matchers that filter and order an index's manifests.

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export class PlatformError extends Error {
  override name = "PlatformError";
}

const knownOs = new Set(["aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"]);
const knownArch = new Set([
  "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le", "loong64", "mips", "mipsle", "mips64", "mips64le",
  "mips64p32", "mips64p32le", "ppc", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm",
]);

/** Go's GOARCH for this Node process. */
const goArch: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64", loong64: "loong64" };

function runtimeArch(): string {
  return goArch[process.arch] ?? process.arch;
}

function normalizeOs(os: string): string {
  if (os === "") return "linux";
  const lower = os.toLowerCase();
  return lower === "macos" ? "darwin" : lower;
}

function normalizeArch(arch: string, variant: string): [string, string] {
  let a = arch.toLowerCase();
  let v = variant.toLowerCase();
  switch (a) {
    case "i386":
      a = "386";
      v = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      a = "amd64";
      if (v === "v1") v = "";
      break;
    case "aarch64":
    case "arm64":
      a = "arm64";
      if (v === "8" || v === "v8") v = "";
      break;
    case "armhf":
      a = "arm";
      v = "v7";
      break;
    case "armel":
      a = "arm";
      v = "v6";
      break;
    case "arm":
      if (v === "" || v === "7") v = "v7";
      else if (v === "5" || v === "6" || v === "8") v = `v${v}`;
      break;
  }
  return [a, v];
}

function make(os: string, architecture: string, variant: string): Platform {
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** platforms.Normalize. */
export function normalizePlatform(p: Platform): Platform {
  const [arch, variant] = normalizeArch(p.architecture, p.variant ?? "");
  return make(normalizeOs(p.os), arch, variant);
}

/** platforms.Format: os/arch[/variant]; "unknown" without an OS. */
export function formatPlatform(p: Platform): string {
  if (p.os === "") return "unknown";
  return [p.os, p.architecture, p.variant ?? ""].filter((s) => s !== "").join("/");
}

/** platforms.DefaultSpec: this host (Linux; Node's arch mapped to Go's names). */
export function hostPlatform(): Platform {
  const arch = runtimeArch();
  return make("linux", arch, arch === "arm" ? "v7" : "");
}

const componentPattern = /^[A-Za-z0-9_-]+$/;

/** platforms.Parse: `os`, `arch`, `os/arch` or `os/arch/variant`. */
export function parsePlatform(specifier: string): Platform {
  if (specifier.includes("*")) throw new PlatformError(`"${specifier}": wildcards not yet supported`);
  const parts = specifier.split("/");
  for (const part of parts) {
    if (!componentPattern.test(part)) {
      throw new PlatformError(`"${part}" is an invalid component of "${specifier}": platform specifier component must match "^[A-Za-z0-9_-]+$"`);
    }
  }
  if (parts.length === 1) {
    const os = normalizeOs(parts[0]!);
    if (knownOs.has(os)) {
      const arch = runtimeArch();
      return make(os, arch, "");
    }
    let [arch, variant] = normalizeArch(parts[0]!, "");
    if (arch === "arm" && variant === "v7") variant = "";
    if (knownArch.has(arch)) return make("linux", arch, variant);
    throw new PlatformError(`"${specifier}": unknown operating system or architecture`);
  }
  if (parts.length === 2) {
    let [arch, variant] = normalizeArch(parts[1]!, "");
    if (arch === "arm" && variant === "v7") variant = "";
    return make(normalizeOs(parts[0]!), arch, variant);
  }
  if (parts.length === 3) {
    let [arch, variant] = normalizeArch(parts[1]!, parts[2]!);
    if (arch === "arm64" && variant === "") variant = "v8";
    return make(normalizeOs(parts[0]!), arch, variant);
  }
  throw new PlatformError(`"${specifier}": cannot parse platform specifier`);
}

/** platforms.MatchComparer: which platforms qualify, and which is preferred. */
export interface PlatformMatcher {
  match(p: Platform): boolean;
  /** True when `a` should be preferred over `b`. */
  less(a: Platform, b: Platform): boolean;
  readonly description: string;
}

function equal(want: Platform, p: Platform): boolean {
  const n = normalizePlatform(p);
  return want.os === n.os && want.architecture === n.architecture && (want.variant ?? "") === (n.variant ?? "");
}

/** platforms.Ordered: any of these, preferring earlier ones. */
export function orderedPlatforms(...platforms: Platform[]): PlatformMatcher {
  const wanted = platforms.map(normalizePlatform);
  return {
    description: wanted.map(formatPlatform).join(", "),
    match: (p) => wanted.some((w) => equal(w, p)),
    less: (a, b) => {
      for (const w of wanted) {
        const am = equal(w, a);
        const bm = equal(w, b);
        if (am && !bm) return true;
        if (am || bm) return false;
      }
      return false;
    },
  };
}

/** platformVector: the platforms a machine of `p` can also run (amd64 → 386, arm64 → arm/v8…v5). */
function platformVector(p: Platform): Platform[] {
  const vector = [p];
  const variantNumber = (v: string | undefined) => Number.parseInt((v ?? "").replace(/^v/, ""), 10);
  switch (p.architecture) {
    case "amd64": {
      const n = variantNumber(p.variant);
      if (n > 1) for (let i = n - 1; i >= 1; i--) vector.push(make(p.os, "amd64", `v${i}`));
      vector.push(make(p.os, "386", ""));
      break;
    }
    case "arm": {
      const n = variantNumber(p.variant);
      if (n > 5) for (let i = n - 1; i >= 5; i--) vector.push(make(p.os, "arm", `v${i}`));
      break;
    }
    case "arm64":
      vector.push(...platformVector(make(p.os, "arm", p.variant || "v8")));
      break;
  }
  return vector;
}

/** platforms.Only: the platform and what it can also run. */
export function onlyPlatform(p: Platform): PlatformMatcher {
  return { ...orderedPlatforms(...platformVector(normalizePlatform(p))), description: formatPlatform(normalizePlatform(p)) };
}

/** platforms.OnlyStrict: exactly this platform (in any spelling). */
export function onlyPlatformStrict(p: Platform): PlatformMatcher {
  return orderedPlatforms(p);
}

/** platforms.All. */
export const allPlatforms: PlatformMatcher = { description: "all", match: () => true, less: () => false };

/** platforms.Default: this host, non-strict. */
export function defaultPlatformMatcher(): PlatformMatcher {
  return onlyPlatform(hostPlatform());
}

/** platforms.DefaultStrict: this host only (what ctr export uses without --platform). */
export function defaultStrictMatcher(): PlatformMatcher {
  return onlyPlatformStrict(hostPlatform());
}
