// The build context: the request's tar extracted into a private temp directory (core/tar
// keeps every entry inside it), then .dockerignore applied server-side too (the CLI applies
// it already; other clients may not), keeping the Dockerfile and .dockerignore themselves.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dockerignore from "@balena/dockerignore";
import { applyTar } from "../../../core/tar/apply.ts";
import { readTar } from "../../../core/tar/reader.ts";
import type { ByteSource } from "../../../core/tar/byte-reader.ts";
import * as native from "../../../native/index.ts";
import { badRequest } from "../http.ts";

// A CommonJS module whose types declare an ES default export: at run time the import is the factory itself.
const ignore = dockerignore as unknown as typeof dockerignore.default;

/** Extracts the context; the caller removes the directory. */
export async function extractContext(body: ByteSource, dockerfile: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "berth-build-context-"));
  try {
    await applyTar(readTar(body, { perEntry: 1 << 20, perArchive: Number.MAX_SAFE_INTEGER }), { root: dir, whiteouts: "delete", sys: native });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw badRequest(`cannot read the build context: ${(err as Error).message}`);
  }
  applyDockerignore(dir, dockerfile);
  return dir;
}

function applyDockerignore(dir: string, dockerfile: string): void {
  const path = join(dir, ".dockerignore");
  if (!existsSync(path)) return;
  const rules = ignore().add(readFileSync(path, "utf8").split(/\r?\n/).filter((l) => l.trim() && !l.trimStart().startsWith("#")));
  const keep = new Set([".dockerignore", dockerfile.replace(/^\.?\//, "")]);
  const visit = (relative: string) => {
    for (const entry of readdirSync(join(dir, relative), { withFileTypes: true })) {
      const rel = relative ? `${relative}/${entry.name}` : entry.name;
      if (!keep.has(rel) && rules.ignores(rel)) {
        // A directory whose name is ignored may still hold re-included (!) paths.
        if (entry.isDirectory()) {
          visit(rel);
          if (readdirSync(join(dir, rel)).length === 0) rmSync(join(dir, rel), { recursive: true, force: true });
        } else rmSync(join(dir, rel), { force: true });
      } else if (entry.isDirectory()) visit(rel);
    }
  };
  visit("");
}
