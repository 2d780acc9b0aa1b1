// containerd's label limit: key and value together at most 4096 bytes.
import { invalidArgument } from "./errors.ts";

const maxLabelSize = 4096;

export function validateLabels(labels: Record<string, string>): Record<string, string> {
  for (const [key, value] of Object.entries(labels)) {
    if (key === "") throw invalidArgument("label key must not be empty");
    const size = Buffer.byteLength(key) + Buffer.byteLength(value);
    if (size > maxLabelSize) {
      throw invalidArgument(`label key and value length (${size} bytes) greater than maximum size (${maxLabelSize} bytes)`);
    }
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
