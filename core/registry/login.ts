// docker login / logout: check the credentials against the registry (GET /v2/ and
// its 401 handshake), then file them in config.json (or the credential helper).
import { BerthError } from "../errors.ts";
import { discardBody } from "./errors.ts";
import { RegistryClient, type RegistryClientOptions } from "./client.ts";
import { eraseCredentials, storeCredentials, type Credentials, type CredentialStoreOptions } from "./credentials.ts";

export async function login(registry: string, credentials: Credentials, options: RegistryClientOptions & CredentialStoreOptions = {}): Promise<void> {
  const client = new RegistryClient({ ...options, credentials: async () => credentials });
  try {
    const [endpoint] = client.endpoints(registry, "push");
    const res = await client.send(endpoint!, registry, { method: "GET", path: "/v2/", scopes: [] });
    discardBody(res.body);
  } catch (err) {
    if (err instanceof BerthError && err.message.startsWith("unauthorized")) throw new BerthError("failed precondition", `login to ${registry} failed: ${err.message}`);
    throw err;
  } finally {
    await client.close();
  }
  await storeCredentials(registry, credentials, { ...(options.configPath ? { configPath: options.configPath } : {}) });
}

export async function logout(registry: string, options: CredentialStoreOptions = {}): Promise<boolean> {
  return eraseCredentials(registry, options);
}
