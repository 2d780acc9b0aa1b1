// Registry credentials where Docker keeps them: ~/.docker/config.json (`auths`
// entries with base64 user:password), or a credential helper named by `credHelpers`
// (per registry) or `credsStore` (all), run as docker-credential-<name> with the
// server URL on stdin and JSON on stdout. login/logout rewrite the file atomically.
import { spawn } from "node:child_process";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { BerthError, invalidArgument } from "../errors.ts";
import { dockerHub } from "./reference.ts";

export interface Credentials {
  username: string;
  password: string;
  /** An OAuth refresh token (a helper's Username "<token>"), used instead of the password. */
  identityToken?: string;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [other: string]: unknown;
}

export function defaultDockerConfigPath(): string {
  return join(process.env.DOCKER_CONFIG ?? join(homedir(), ".docker"), "config.json");
}

/** The key Docker files a registry's credentials under (Docker Hub keeps its historic URL). */
export function serverAddress(registry: string): string {
  return registry === dockerHub ? "https://index.docker.io/v1/" : registry;
}

/** "https://host:5000/v1/" → "host:5000": how an `auths` key is matched to a registry. */
function keyHost(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, "").split("/")[0]!;
  return host === "index.docker.io" || host === "registry-1.docker.io" ? dockerHub : host;
}

function readConfig(path: string): DockerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
  if (text.trim() === "") return {};
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${path}: invalid JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw invalidArgument(`${path}: expected a JSON object`);
  return doc as DockerConfig;
}

/** Temp file in the same dir, fsync, rename, fsync the dir: readers see the old file or the new one. */
function writeConfig(path: string, config: DockerConfig): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.config.json.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = openSync(temp, "wx", 0o600);
    try {
      writeSync(fd, `${JSON.stringify(config, null, "\t")}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  const dirFd = openSync(dir, "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

function decodeEntry(entry: AuthEntry, key: string, path: string): Credentials | undefined {
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon === -1) throw invalidArgument(`${path}: auths["${key}"].auth is not base64 of user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (entry.identitytoken) return { username: entry.username ?? "", password: "", identityToken: entry.identitytoken };
  if (entry.username !== undefined) return { username: entry.username, password: entry.password ?? "" };
  return undefined;
}

const helperTimeoutMs = 30_000;

/** Runs docker-credential-<helper> <action> with `input` on stdin; resolves with its exit code and stdout. */
function runHelper(helper: string, action: "get" | "store" | "erase", input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) return Promise.reject(invalidArgument(`credential helper name "${helper}" is not a plain name`));
  const program = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { stdio: ["pipe", "pipe", "pipe"] });
    // Not spawn's own timeout: its timer outlives a helper that failed to start.
    const timer = setTimeout(() => child.kill("SIGKILL"), helperTimeoutMs);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(new BerthError("failed precondition", `credential helper ${program}: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (signal === "SIGKILL") reject(new BerthError("unavailable", `credential helper ${program} ${action}: no answer within ${helperTimeoutMs / 1000} s`));
      else resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.on("error", () => {}); // a helper that exits without reading: its exit code tells
    child.stdin.end(input);
  });
}

const notFoundPattern = /credentials not found/i;

async function helperGet(helper: string, registry: string): Promise<Credentials | undefined> {
  const program = `docker-credential-${helper}`;
  const r = await runHelper(helper, "get", serverAddress(registry));
  if (r.code !== 0) {
    if (notFoundPattern.test(r.stdout) || notFoundPattern.test(r.stderr)) return undefined;
    throw new BerthError("failed precondition", `credential helper ${program} get failed (exit ${r.code}): ${(r.stdout || r.stderr).trim()}`);
  }
  let doc: { Username?: unknown; Secret?: unknown };
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    throw new BerthError("failed precondition", `credential helper ${program} get: output is not JSON: ${r.stdout.trim().slice(0, 200)}`);
  }
  if (typeof doc.Username !== "string" || typeof doc.Secret !== "string") {
    throw new BerthError("failed precondition", `credential helper ${program} get: expected {"Username", "Secret"} strings`);
  }
  if (doc.Username === "<token>") return { username: "", password: "", identityToken: doc.Secret };
  return { username: doc.Username, password: doc.Secret };
}

export interface CredentialStoreOptions {
  /** config.json to use (default $DOCKER_CONFIG/config.json or ~/.docker/config.json). */
  configPath?: string;
}

/** The credentials for a registry (host[:port], "docker.io" for Docker Hub), or undefined for anonymous access. */
export async function getCredentials(registry: string, options: CredentialStoreOptions = {}): Promise<Credentials | undefined> {
  const path = options.configPath ?? defaultDockerConfigPath();
  const config = readConfig(path);
  const helper = config.credHelpers?.[registry] ?? config.credsStore;
  if (helper) {
    const found = await helperGet(helper, registry);
    if (found) return found;
  }
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    if (keyHost(key) === registry && entry && typeof entry === "object") {
      const found = decodeEntry(entry, key, path);
      if (found) return found;
    }
  }
  return undefined;
}

/** Saves credentials (through the registry's helper when one is configured, else base64 in `auths`). */
export async function storeCredentials(registry: string, credentials: Credentials, options: CredentialStoreOptions = {}): Promise<void> {
  const path = options.configPath ?? defaultDockerConfigPath();
  const config = readConfig(path);
  const address = serverAddress(registry);
  const helper = config.credHelpers?.[registry] ?? config.credsStore;
  const auths = Object.fromEntries(Object.entries(config.auths ?? {}).filter(([key]) => keyHost(key) !== registry));
  if (helper) {
    const secret = JSON.stringify({ ServerURL: address, Username: credentials.username, Secret: credentials.password });
    const r = await runHelper(helper, "store", secret);
    if (r.code !== 0) throw new BerthError("failed precondition", `credential helper docker-credential-${helper} store failed (exit ${r.code}): ${(r.stdout || r.stderr).trim()}`);
    // The entry stays as Docker leaves it: empty, marking that the helper holds the secret.
    auths[address] = {};
  } else {
    auths[address] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64") };
  }
  writeConfig(path, { ...config, auths });
}

/** Removes a registry's credentials; false when there were none. */
export async function eraseCredentials(registry: string, options: CredentialStoreOptions = {}): Promise<boolean> {
  const path = options.configPath ?? defaultDockerConfigPath();
  const config = readConfig(path);
  const helper = config.credHelpers?.[registry] ?? config.credsStore;
  let erased = false;
  if (helper) {
    const r = await runHelper(helper, "erase", serverAddress(registry));
    if (r.code === 0) erased = true;
    else if (!notFoundPattern.test(r.stdout + r.stderr)) {
      throw new BerthError("failed precondition", `credential helper docker-credential-${helper} erase failed (exit ${r.code}): ${(r.stdout || r.stderr).trim()}`);
    }
  }
  const auths = config.auths ?? {};
  const kept = Object.fromEntries(Object.entries(auths).filter(([key]) => keyHost(key) !== registry));
  if (Object.keys(kept).length !== Object.keys(auths).length) {
    erased = true;
    writeConfig(path, { ...config, auths: kept });
  }
  return erased;
}
