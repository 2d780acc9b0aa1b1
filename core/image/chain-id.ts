// Snapshot names are chain ids (image-spec config.md): ChainID(L0) = DiffID(L0),
// ChainID(L0..Ln) = sha256("<ChainID(L0..Ln-1)> <DiffID(Ln)>").
import { sha256Digest } from "../digest.ts";

/** The chain id of every prefix of `diffIds`: result[i] names the snapshot of layers 0..i. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const previous = out.at(-1);
    out.push(previous === undefined ? diffId : sha256Digest(`${previous} ${diffId}`));
  }
  return out;
}

/** The chain id of the whole stack ("" for no layers). */
export function chainId(diffIds: readonly string[]): string {
  return chainIds(diffIds).at(-1) ?? "";
}
