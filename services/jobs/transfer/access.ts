// What a pull or push job knows about reaching the registry, as stored in its job data
// (JSON in Redis). Credentials travel in the job data because a job outlives the call
// that asked for it (a restarted worker needs them); they are in berthd's private,
// password-protected Redis, and gone with the job. The client made from them is
// core/registry/access.ts's, shared with the content process that fetches blobs.
import type { RegistryOptions } from "../../../core/gen/berth/services/transfer/v1/transfer.ts";
import type { RegistryAccess } from "../../../core/registry/access.ts";

export { registryClient, registrySettings, type RegistryAccess } from "../../../core/registry/access.ts";

export function accessOf(options: RegistryOptions | undefined): RegistryAccess {
  const credentials = options?.credentials;
  return {
    plainHttp: options?.plainHttp ?? false,
    insecure: options?.insecure ?? false,
    ...(credentials && credentials.username !== "" ? { credentials: { username: credentials.username, password: credentials.password } } : {}),
  };
}
