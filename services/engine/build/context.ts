// The build context: the request's tar extracted into a private temp directory (core/tar
// keeps every entry inside it), then .dockerignore applied server-side too (the CLI applies
// it already; other clients may not), keeping the Dockerfile and .dockerignore themselves.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
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

/** The largest context a build accepts (BERTH_BUILD_CONTEXT_MAX_BYTES; 4 GiB by default). */
export function contextLimit(): number {
  const text = process.env.BERTH_BUILD_CONTEXT_MAX_BYTES;
  return text && /^\d+$/.test(text) ? Number(text) : 4 * 1024 ** 3;
}

class ContextTooLarge extends Error {}

/**
 * The body, ending in an error once it passed `limit` bytes. The rest is read and dropped
 * first, so the client, which is still sending, gets the error reply and not a reset.
 */
async function* limited(body: ByteSource, limit: number): AsyncGenerator<Uint8Array> {
  let total = 0;
  let over = false;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > limit) over = true;
    if (!over) yield chunk;
  }
  if (over) throw new ContextTooLarge(`the build context is larger than the ${limit} bytes this daemon accepts (BERTH_BUILD_CONTEXT_MAX_BYTES)`);
}

/** Extracts the context into `into` (made here; a temp dir by default); the caller removes the directory. */
export async function extractContext(body: ByteSource, dockerfile: string, into?: string): Promise<string> {
  const dir = into ? (mkdirSync(into, { mode: 0o700 }), into) : await mkdtemp(join(tmpdir(), "berth-build-context-"));
  try {
    await applyTar(readTar(limited(body, contextLimit()), { perEntry: 1 << 20, perArchive: Number.MAX_SAFE_INTEGER }), { root: dir, whiteouts: "delete", sys: native });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    if (err instanceof ContextTooLarge || (err as Error).message.includes("BERTH_BUILD_CONTEXT_MAX_BYTES")) throw badRequest((err as Error).message.replace(/^.*?(the build context is larger)/, "$1"));
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
