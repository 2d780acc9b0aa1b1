// containerd's label limit: key and value together at most 4096 bytes. On top of it, the
// labels of one object together at most 256 KiB: without that, only the gRPC message
// size bounded a label map, and a few objects of megabytes of labels each would make
// every List of their namespace too big to answer. 256 KiB is some 2,500 garbage
// collection references (`containerd.io/gc.ref.content.m.<i>`), far above real images.
import { invalidArgument } from "./errors.ts";

const maxLabelSize = 4096;
const maxLabelsTotal = 256 * 1024;

export function validateLabels(labels: Record<string, string>): Record<string, string> {
  let total = 0;
  for (const [key, value] of Object.entries(labels)) {
    if (key === "") throw invalidArgument("label key must not be empty");
    const size = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (size > maxLabelSize) {
      throw invalidArgument(`label key and value length (${size} bytes) greater than maximum size (${maxLabelSize} bytes)`);
    }
    total += size;
  }
  if (total > maxLabelsTotal) {
    throw invalidArgument(`labels total ${total} bytes (keys and values), greater than maximum size (${maxLabelsTotal} bytes)`);
  }
  return labels;
}

/**
 * Applies a field mask's `labels.<key>` paths (or `labels` for all) to a label map;
 * no paths at all (an update without a mask) replace every label, as in containerd.
 * A masked key with an empty or absent value is removed; other paths are ignored.
 */
export function applyLabelMask(
  current: Record<string, string>,
  update: Record<string, string>,
  paths: readonly string[],
): Record<string, string> {
  let result = { ...current };
  for (const path of paths.length > 0 ? paths : ["labels"]) {
    if (path === "labels") {
      result = { ...update };
    } else if (path.startsWith("labels.")) {
      const key = path.slice("labels.".length);
      const value = update[key];
      if (value === undefined || value === "") delete result[key];
      else result[key] = value;
    }
  }
  for (const [key, value] of Object.entries(result)) if (value === "") delete result[key];
  return result;
}

/**
 * The labels an Update leaves on an object whose only mutable field is its labels
 * (content, snapshots, namespaces): the mask may name `labels` or `labels.<key>` and
 * nothing else (INVALID_ARGUMENT naming the path and `object`, e.g. `snapshot "k"`),
 * then applyLabelMask, then the limits.
 */
export function labelsAfterUpdate(
  object: string,
  current: Record<string, string>,
  update: Record<string, string>,
  paths: readonly string[],
): Record<string, string> {
  for (const path of paths) {
    if (path !== "labels" && !(path.startsWith("labels.") && path.length > "labels.".length)) {
      throw invalidArgument(`cannot update ${JSON.stringify(path)} field on ${object}`);
    }
  }
  return validateLabels(applyLabelMask(current, update, paths));
}
