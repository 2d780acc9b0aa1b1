// The daemon-wide registry settings: the `registry` object of berthd's JSON config,
// checked once there, and handed to the jobs process (which does pulls and pushes) as
// JSON in BERTH_REGISTRY_CONFIG. No transport here: berthd loads this without undici.
import { invalidArgument } from "../errors.ts";

export interface RegistrySettings {
  /** Where short names (busybox) go instead of Docker Hub. */
  defaultRegistry?: string;
  /** Registry name → mirrors ([http[s]://]host[:port]), tried in order before it for pulls. */
  mirrors?: Record<string, string[]>;
  /** host[:port]s reached over plain HTTP or TLS that is not verified. */
  insecure?: string[];
  /** Per-host CAs and client certificates (default /etc/berth/certs.d). */
  certsDir?: string;
}

export const registrySettingsEnv = "BERTH_REGISTRY_CONFIG";

const hostPort = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?$/;
const mirrorUrl = /^(https?:\/\/)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?\/?$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function hostList(value: unknown, where: string, pattern: RegExp, expected: string): string[] {
  if (!Array.isArray(value)) throw invalidArgument(`${where}: expected a list of ${expected}`);
  return value.map((item, i) => {
    if (typeof item !== "string" || !pattern.test(item)) throw invalidArgument(`${where}[${i}]: ${JSON.stringify(item)} is not ${expected}`);
    return item;
  });
}

/** The settings in `value`, or an invalid-argument error naming the key that is wrong (`where` prefixes it). */
export function parseRegistrySettings(value: unknown, where = "registry"): RegistrySettings {
  if (value === undefined) return {};
  if (!isObject(value)) throw invalidArgument(`${where}: expected an object`);
  const known = new Set(["defaultRegistry", "mirrors", "insecure", "certsDir"]);
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw invalidArgument(`${where}.${key}: unknown setting (known: ${[...known].join(", ")})`);
  }
  const settings: RegistrySettings = {};
  if (value.defaultRegistry !== undefined) {
    if (typeof value.defaultRegistry !== "string" || !hostPort.test(value.defaultRegistry)) {
      throw invalidArgument(`${where}.defaultRegistry: ${JSON.stringify(value.defaultRegistry)} is not a host[:port]`);
    }
    settings.defaultRegistry = value.defaultRegistry;
  }
  if (value.mirrors !== undefined) {
    if (!isObject(value.mirrors)) throw invalidArgument(`${where}.mirrors: expected an object of registry name → list of mirrors`);
    settings.mirrors = {};
    for (const [name, list] of Object.entries(value.mirrors)) {
      if (!hostPort.test(name)) throw invalidArgument(`${where}.mirrors: ${JSON.stringify(name)} is not a registry host[:port]`);
      settings.mirrors[name] = hostList(list, `${where}.mirrors["${name}"]`, mirrorUrl, "a mirror [http[s]://]host[:port]");
    }
  }
  if (value.insecure !== undefined) settings.insecure = hostList(value.insecure, `${where}.insecure`, hostPort, "a host[:port]");
  if (value.certsDir !== undefined) {
    if (typeof value.certsDir !== "string" || !value.certsDir.startsWith("/")) throw invalidArgument(`${where}.certsDir: expected an absolute path`);
    settings.certsDir = value.certsDir;
  }
  return settings;
}

/** What berthd put in the environment (its config was checked there; a bad value here is a bug). */
export function registrySettingsFromEnv(env: NodeJS.ProcessEnv = process.env): RegistrySettings {
  const text = env[registrySettingsEnv];
  if (!text) return {};
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${registrySettingsEnv}: invalid JSON: ${(err as Error).message}`);
  }
  return parseRegistrySettings(doc, registrySettingsEnv);
}
