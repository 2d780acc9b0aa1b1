// What a pull or push job knows about reaching the registry, as stored in its job data
// (JSON in Redis), and the registry client made from it. Credentials travel in the job
// data because a job outlives the call that asked for it (a restarted worker needs
// them); they are in berthd's private, password-protected Redis, and gone with the job.
import type { RegistryOptions } from "../../../core/gen/berth/services/transfer/v1/transfer.ts";
import { RegistryClient, registrySettingsFromEnv, type RegistrySettings, type RetryOptions } from "../../../core/registry/index.ts";

let daemonSettings: RegistrySettings | undefined;

/** berthd's `registry` settings (default registry, mirrors, insecure hosts, certs dir), read once. */
export function registrySettings(): RegistrySettings {
  daemonSettings ??= registrySettingsFromEnv();
  return daemonSettings;
}

export interface RegistryAccess {
  plainHttp: boolean;
  insecure: boolean;
  credentials?: { username: string; password: string };
}

export function accessOf(options: RegistryOptions | undefined): RegistryAccess {
  const credentials = options?.credentials;
  return {
    plainHttp: options?.plainHttp ?? false,
    insecure: options?.insecure ?? false,
    ...(credentials && credentials.username !== "" ? { credentials: { username: credentials.username, password: credentials.password } } : {}),
  };
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
  return new RegistryClient({
    ...settings,
    insecure: [...(settings.insecure ?? []), ...(access.plainHttp || access.insecure ? [registry] : [])],
    // Never the daemon's own docker config: a caller's pull uses the caller's credentials,
    // and only with the registry they were given for (a mirror is another host).
    credentials: async (name) => (creds && name === registry ? { username: creds.username, password: creds.password } : undefined),
    ...(retry ? { retry } : {}),
    ...(signal ? { signal } : {}),
  });
}
