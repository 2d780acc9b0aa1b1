// What a daemon process knows about reaching one registry for a caller: the caller's
// plain HTTP, unverified TLS and credentials (as a pull or push job stores them), and
// the client made from them with berthd's settings. Shared by the jobs process (which
// resolves and pushes) and the content process (which fetches blobs), so both send
// credentials to the same hosts only.
import { createHash } from "node:crypto";
import { AuthCache } from "./auth.ts";
import { RegistryClient, type RegistryClientOptions } from "./client.ts";
import type { RetryOptions } from "./retry.ts";
import { registrySettingsFromEnv, type RegistrySettings } from "./settings.ts";

let daemonSettings: RegistrySettings | undefined;

/** berthd's `registry` settings (default registry, mirrors, insecure hosts, certs dir), read once. */
export function registrySettings(): RegistrySettings {
  daemonSettings ??= registrySettingsFromEnv();
  return daemonSettings;
}

export interface RegistryAccess {
  /** Plain HTTP only, as ctr's --plain-http. */
  plainHttp: boolean;
  /** TLS without verification, and plain HTTP when TLS cannot connect (Docker's insecure registries). */
  insecure: boolean;
  credentials?: { username: string; password: string };
}

/**
 * Auth state by caller identity (registry and credentials). A pull fetches each blob
 * with a client of its own (one call each to the content process); sharing the tokens
 * spares each blob a 401 and a token request of its own, as one client would.
 */
const authCaches = new Map<string, { cache: AuthCache; usedAt: number }>();
/** Tokens last minutes; an identity unused this long is forgotten. */
const authCacheIdleMs = 10 * 60_000;

function authCacheFor(registry: string, credentials: RegistryAccess["credentials"]): AuthCache {
  const now = Date.now();
  for (const [key, entry] of authCaches) if (now - entry.usedAt > authCacheIdleMs) authCaches.delete(key);
  // Hashed: the password is not kept as a map key.
  const key = createHash("sha256").update(JSON.stringify([registry, credentials?.username ?? "", credentials?.password ?? ""])).digest("hex");
  const entry = authCaches.get(key) ?? { cache: new AuthCache(), usedAt: now };
  entry.usedAt = now;
  authCaches.set(key, entry);
  return entry.cache;
}

/**
 * A client for one registry, with berthd's settings (mirrors, insecure hosts, certs
 * dir). The request's plain HTTP and unverified TLS are allowed for that registry
 * only. `retry` is the client's own (per request); jobs retry with backoff
 * themselves, so their clients try once.
 */
export function registryClient(access: RegistryAccess, registry: string, retry?: RetryOptions, signal?: AbortSignal): RegistryClient {
  const creds = access.credentials;
  const settings = registrySettings();
  const options: RegistryClientOptions = {
    ...settings,
    insecure: [...(settings.insecure ?? []), ...(access.insecure ? [registry] : [])],
    // As ctr's --plain-http: HTTP at once (HTTPS first cost every blob's fresh client a failed handshake).
    plainHttp: access.plainHttp ? [registry] : [],
    // Never the daemon's own docker config: a caller's pull uses the caller's credentials,
    // and only with the registry they were given for (a mirror is another host).
    credentials: async (name) => (creds && name === registry ? { username: creds.username, password: creds.password } : undefined),
    ...(retry ? { retry } : {}),
    ...(signal ? { signal } : {}),
    authCache: authCacheFor(registry, creds),
  };
  return new RegistryClient(options);
}
