// POST /auth (`docker login`): the credentials are checked against the registry's /v2/
// the way a pull would present them; nothing is stored by the engine (the CLI files
// them in its own config). A refusal is a 401 with the registry's reason.
import { BerthError } from "../../../core/errors.ts";
import { discardBody } from "../../../core/registry/errors.ts";
import { RegistryClient } from "../../../core/registry/client.ts";
import { EngineError, badRequest, type RequestContext } from "../http.ts";

interface AuthRequest {
  username?: string;
  password?: string;
  serveraddress?: string;
  identitytoken?: string;
}

/** The registry host of a server address: `https://index.docker.io/v1/` → docker.io, `http://127.0.0.1:5000` → 127.0.0.1:5000. */
export function registryOfAddress(address: string): string {
  const host = address.replace(/^[a-z]+:\/\//i, "").split("/")[0]!;
  if (host === "" || host === "index.docker.io" || host === "registry-1.docker.io") return "docker.io";
  return host;
}

export async function checkLogin(ctx: RequestContext): Promise<void> {
  const body = await ctx.json<AuthRequest>();
  if (!body.username) throw badRequest("username is required");
  const registry = registryOfAddress(body.serveraddress ?? "");
  const credentials = { username: body.username, password: body.password ?? "" };
  const client = new RegistryClient({ credentials: async () => credentials, retry: { attempts: 1 } });
  try {
    const [endpoint] = client.endpoints(registry, "push");
    const res = await client.send(endpoint!, registry, { method: "GET", path: "/v2/", scopes: [] });
    discardBody(res.body);
  } catch (err) {
    if (err instanceof BerthError && /^unauthori[sz]ed/i.test(err.message)) throw new EngineError(401, err.message);
    throw err;
  } finally {
    await client.close();
  }
  ctx.send(200, { Status: "Login Succeeded", IdentityToken: "" });
}
