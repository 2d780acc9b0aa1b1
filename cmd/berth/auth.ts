// Registry credentials as the docker CLI keeps them: ~/.docker/config.json (or
// $DOCKER_CONFIG, or --config), `auths` keyed by registry, each `auth` the base64 of
// "user:password". Pull and push send them as X-Registry-Auth (base64url JSON).
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { writePrivateFile } from "../../core/private-files.ts";
import { CliError } from "./errors.ts";

export const dockerHubServer = "https://index.docker.io/v1/";

interface ConfigFile {
  auths?: Record<string, { auth?: string; identitytoken?: string }>;
  [key: string]: unknown;
}

export function configDir(flag: string | undefined): string {
  return flag ?? process.env.DOCKER_CONFIG ?? join(process.env.HOME || homedir(), ".docker");
}

export function readConfig(dir: string): ConfigFile {
  const file = join(dir, "config.json");
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, "utf8")) as ConfigFile;
  } catch (err) {
    throw new CliError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export function writeConfig(dir: string, config: ConfigFile): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writePrivateFile(join(dir, "config.json"), `${JSON.stringify(config, null, "\t")}\n`);
}

/** The key a registry's credentials are stored under: Docker Hub's URL, or the host as given. */
export function registryKey(server: string | undefined): string {
  if (!server || ["docker.io", "index.docker.io", "registry-1.docker.io"].includes(server.replace(/^https?:\/\//, "").replace(/\/.*$/, ""))) return dockerHubServer;
  return server.replace(/^https?:\/\//, "").replace(/\/+$/, "");
}

/** The registry host of an image reference (docker.io when the first part is not a host). */
export function registryOf(ref: string): string {
  const slash = ref.indexOf("/");
  const first = slash < 0 ? "" : ref.slice(0, slash);
  return first && (first.includes(".") || first.includes(":") || first === "localhost") ? first : "docker.io";
}

/** X-Registry-Auth for a reference: its stored credentials, or `{}` (anonymous). */
export function registryAuthHeader(dir: string, ref: string): string {
  const key = registryKey(registryOf(ref));
  const entry = readConfig(dir).auths?.[key];
  let body: Record<string, string> = {};
  if (entry?.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    body = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), serveraddress: key };
  } else if (entry?.identitytoken) body = { identitytoken: entry.identitytoken, serveraddress: key };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}
