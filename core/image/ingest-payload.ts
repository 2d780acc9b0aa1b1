// The Apply payload by which a pull's layer job asks the diff service to extract a
// layer from its download's ingest while it grows (services/diff/ingest-apply.ts).
// Berth's own: containerd's Diff service knows no such payload and ignores it.
import { invalidArgument } from "../errors.ts";
import type { Any } from "../gen/google/protobuf/any.ts";

export const ingestPayloadKey = "berth.io/apply-from-ingest";
const ingestPayloadType = "berth.io/ingest-ref";

/** Apply's payloads naming the ingest `ref` (of the caller's namespace). */
export function ingestPayload(ref: string): Record<string, Any> {
  return { [ingestPayloadKey]: { typeUrl: ingestPayloadType, value: Buffer.from(ref) } };
}

/** The ingest ref an Apply request names, if any. */
export function ingestRefOf(payloads: Record<string, Any>): string | undefined {
  const payload = payloads[ingestPayloadKey];
  if (!payload) return undefined;
  const ref = Buffer.from(payload.value).toString("utf8");
  if (payload.typeUrl !== ingestPayloadType || ref === "") throw invalidArgument(`apply: payload ${ingestPayloadKey} must be a ${ingestPayloadType} naming an ingest`);
  return ref;
}
