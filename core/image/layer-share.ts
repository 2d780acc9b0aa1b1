// What the snapshots service and the unpack agree on for layers shared across
// namespaces (docs/snapshotters.md).

/** The Prepare label naming the chain id an extraction is for (containerd's unpacker sets it too). */
export const snapshotRefLabel = "containerd.io/snapshot.ref";

/**
 * In the ALREADY_EXISTS message of a Prepare whose target this call took from another
 * namespace's unpack: the unpack then counts the chain id as its own to roll back.
 */
export const sharedTargetNote = "taken from another namespace's unpack";
