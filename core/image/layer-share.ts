// What the snapshots service and the unpack agree on for layers shared across
// namespaces (docs/snapshotters.md).

/** The Prepare label naming the chain id an extraction is for (containerd's unpacker sets it too). */
export const snapshotRefLabel = "containerd.io/snapshot.ref";

/**
 * In the ALREADY_EXISTS message of a Prepare whose target this call took from another
 * namespace's unpack, followed by ": " and the names it added (the target and the parents
 * the namespace lacked) as a JSON array: the unpack counts them as its own.
 */
export const sharedTargetNote = "taken from another namespace's unpack";

/** The names a Prepare's error says it took from another namespace (none for any other error). */
export function sharedNamesOf(message: string): string[] {
  const at = message.indexOf(`${sharedTargetNote}: [`);
  const end = message.lastIndexOf("]");
  if (at < 0 || end < at) return [];
  try {
    const names: unknown = JSON.parse(message.slice(at + sharedTargetNote.length + 2, end + 1));
    return Array.isArray(names) ? names.filter((name): name is string => typeof name === "string") : [];
  } catch {
    return [];
  }
}
