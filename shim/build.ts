// Builds berth-shim (dist/berth-shim) and its ASan/UBSan variant (dist/berth-shim-sanitize,
// which shim.test.ts runs too) when missing or older than their sources. libc only.
// Called by scripts/build.ts.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const shimDir = new URL(".", import.meta.url).pathname;
const distDir = join(shimDir, "..", "dist");

export const shimBinary = join(distDir, "berth-shim");
export const sanitizedShimBinary = join(distDir, "berth-shim-sanitize");

const warnings = ["-std=c11", "-Wall", "-Wextra", "-Werror"];
const variants: { output: string; flags: string[] }[] = [
  { output: shimBinary, flags: ["-O2", ...warnings] },
  {
    output: sanitizedShimBinary,
    flags: ["-g", "-O1", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", ...warnings],
  },
];

export function buildShim(): void {
  const sources = readdirSync(shimDir).filter((name) => /\.[ch]$/.test(name)).map((name) => join(shimDir, name));
  const newest = Math.max(...sources.map((file) => statSync(file).mtimeMs));
  mkdirSync(distDir, { recursive: true });
  for (const { output, flags } of variants) {
    if (existsSync(output) && statSync(output).mtimeMs >= newest) continue;
    const cFiles = sources.filter((file) => file.endsWith(".c"));
    execFileSync("cc", [...flags, "-o", output, ...cFiles], { stdio: "inherit" });
  }
}
