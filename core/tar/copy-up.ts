// A directory that a layer needs (the parent of one of its entries) but does not carry
// is made by the applier. On a mounted overlay it would have been copied up from the
// layers below with their metadata, so it takes theirs: owner, xattrs (never overlayfs'
// own trusted.overlay.*), mode and times of the topmost lower dir that has the path.
// Used by the appliers when the lowers are known at apply time (./apply.ts, and
// native/src/layer_apply.c does the same), and by the overlay snapshotter's rebase when
// they are known only at commit (a layer extracted without its parents).
// Paths are byte strings (./byte-fs.ts).
import { chmod, displayPath, lchown, lstat, lutimes, rawPath } from "./byte-fs.ts";
import { resolveInRoot } from "./resolve.ts";
import { errnoCode, overlayXattrPrefix, type LayerSys } from "./sys.ts";

export interface CopiedTimes {
  atime: Date;
  mtime: Date;
}

/**
 * Sets an xattr; one the filesystem or the LSM refuses is skipped with a warning (as
 * containerd does), anything else throws. `regular`: a file or directory (user.* is
 * refused on other types for a reason that is not the layer's fault).
 */
export function setXattrOrSkip(sys: LayerSys, path: string, name: string, value: Uint8Array, regular: boolean, shown: string, warn?: (message: string) => void): void {
  try {
    sys.lsetxattr(rawPath(path), name, value, 0);
  } catch (err) {
    const code = errnoCode(err);
    const skippable = code === "ENOTSUP" || code === "EOPNOTSUPP" || (code === "EPERM" && (name.startsWith("security.") || (name.startsWith("user.") && !regular)));
    if (!skippable) throw err;
    warn?.(`ignored xattr ${name} on ${displayPath(shown)}: ${code}`);
  }
}

/**
 * Gives the directory `path` (which is `components` below its root) the metadata of the
 * same path in the topmost of `lowers` (topmost first) that has it. The first lower that
 * has the path decides: a non-directory there (a whiteout, a file) hides the ones below,
 * and the directory keeps what it has. Returns the times it set, or undefined.
 */
export function copyUpDirInfo(path: string, components: readonly string[], lowers: readonly string[], sys: LayerSys, warn?: (message: string) => void): CopiedTimes | undefined {
  const shown = components.join("/");
  for (const lower of lowers) {
    let source: string;
    try {
      source = resolveInRoot(lower, components);
    } catch {
      return undefined;
    }
    const stat = lstat(source);
    if (!stat) continue;
    if (!stat.isDirectory()) return undefined;
    // chown first: it clears security.capability and the setuid bits.
    lchown(path, stat.uid, stat.gid);
    const raw = rawPath(source);
    for (const name of sys.llistxattr(raw)) {
      if (name.startsWith(overlayXattrPrefix)) continue;
      const value = sys.lgetxattr(raw, name);
      if (value !== null) setXattrOrSkip(sys, path, name, value, true, shown, warn);
    }
    chmod(path, stat.mode & 0o7777);
    lutimes(path, stat.atime, stat.mtime);
    return { atime: stat.atime, mtime: stat.mtime };
  }
  return undefined;
}

/**
 * The Apply reply's annotation listing the directories a layer extracted into a
 * parentless overlay upper dir (no lower dirs given) made without carrying them
 * (ApplyResult.copyUpDirs): a JSON array of byte strings (./byte-fs.ts: one char per
 * byte of the name) relative to the upper dir. Whoever commits that snapshot on its
 * real parent hands them to Commit (copy_up_dirs), so they take the parent chain's
 * metadata as extraction on top of the parent would have given them
 * (core/image/unpack.ts). Past copyUpDirsLimit bytes the list is left out and
 * copyUpDirsOverflow set instead: the layer must then be extracted on its parent.
 */
export const copyUpDirsAnnotation = "berth.io/apply.copy-up-dirs";
export const copyUpDirsOverflow = "berth.io/apply.copy-up-dirs-overflow";
/** Well under the 4 MiB a Commit request may take. */
export const copyUpDirsLimit = 1024 * 1024;

export function copyUpDirsAnnotations(dirs: readonly string[]): Record<string, string> {
  if (dirs.length === 0) return {};
  const list = JSON.stringify(dirs);
  return Buffer.byteLength(list) > copyUpDirsLimit ? { [copyUpDirsOverflow]: "true" } : { [copyUpDirsAnnotation]: list };
}

/** The names an Apply reply's annotations list, as bytes; "overflow" when too many to list. */
export function copyUpDirsOf(annotations: Record<string, string>): Buffer[] | "overflow" {
  if (annotations[copyUpDirsOverflow] === "true") return "overflow";
  const list = annotations[copyUpDirsAnnotation];
  if (list === undefined) return [];
  const parsed: unknown = JSON.parse(list);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "string")) throw new Error(`${copyUpDirsAnnotation}: not a list of names`);
  return parsed.map((name: string) => rawPath(name));
}
