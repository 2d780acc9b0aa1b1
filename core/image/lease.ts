// Client leases as ctr opens them (reference §1.8): id "<nanos>-<4 base64url
// chars>", an expiry label 24 h ahead, deleted when the work is done.
import { leaseId } from "../ids.ts";
import { isAlreadyExists, isNotFound } from "../grpc-status.ts";
import { callOptions, type ImageServices } from "./services.ts";
import { labels as wellKnown } from "./media-types.ts";


/** RFC 3339 without fractions, as Go's time.RFC3339 prints UTC. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
}

export interface LeaseOptions {
  id?: string;
  labels?: Record<string, string>;
  /** Expiry from now (default 24 h). */
  expireMs?: number;
  /** Tolerate an existing lease with this id (images mount reuses its target's lease). */
  reuse?: boolean;
}

export async function createLease(svc: ImageServices, options: LeaseOptions = {}): Promise<string> {
  const id = options.id ?? leaseId();
  const labels = { [wellKnown.gcExpire]: rfc3339(Date.now() + (options.expireMs ?? 24 * 3600 * 1000)), ...options.labels };
  try {
    await svc.leases.create({ id, labels }, callOptions(svc));
  } catch (err) {
    if (!(options.reuse && isAlreadyExists(err))) throw err;
  }
  return id;
}

export async function deleteLease(svc: ImageServices, id: string): Promise<void> {
  try {
    await svc.leases.delete({ id, sync: false }, callOptions(svc));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * Runs `fn` under a lease: the given one (client.WithLease reuses a lease already
 * in the context), or a new one deleted afterwards.
 */
export async function withLease<T>(svc: ImageServices, existing: string | undefined, fn: (lease: string) => Promise<T>): Promise<T> {
  if (existing) return fn(existing);
  const lease = await createLease(svc);
  try {
    return await fn(lease);
  } finally {
    await deleteLease(svc, lease).catch(() => undefined);
  }
}
