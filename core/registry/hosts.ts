// Which URLs serve a registry name, and how to talk to each: mirrors first (pulls
// only), then the registry itself; HTTPS with the CA and client certificate from
// certs.d/<host:port>/ (Docker's layout), plain HTTP only where allowed (configured
// insecure, or loopback as Docker allows). One connection pool per host.
import { readdirSync, readFileSync } from "node:fs";
import { rootCertificates, type ConnectionOptions } from "node:tls";
import { join } from "node:path";
import { Agent } from "./http.ts";
import { invalidArgument } from "../errors.ts";
import { dockerHub } from "./reference.ts";

export const defaultCertsDir = "/etc/berth/certs.d";

export interface HostsOptions {
  /** Registry name → mirror URLs or host[:port]s, tried in order before the registry for pulls. */
  mirrors?: Record<string, string[]>;
  /** host[:port]s that may be reached over plain HTTP or TLS that is not verified. */
  insecure?: string[];
  /** host[:port]s reached over plain HTTP only (ctr's --plain-http): no TLS attempt first. */
  plainHttp?: string[];
  /** Where per-host TLS material lives (default /etc/berth/certs.d). */
  certsDir?: string;
}

export type Scheme = "https" | "http";

export interface Endpoint {
  /** host[:port] to connect to (Docker Hub's API host for docker.io). */
  host: string;
  /** Schemes to try, in order (the second only when the first cannot connect). */
  schemes: Scheme[];
  mirror: boolean;
}

export interface TlsMaterial {
  ca?: string[];
  cert?: string;
  key?: string;
}

/** The host part of host[:port] (IPv6 brackets removed). */
export function hostname(host: string): string {
  if (host.startsWith("[")) return host.slice(1, host.indexOf("]"));
  const colon = host.lastIndexOf(":");
  return colon === -1 ? host : host.slice(0, colon);
}

export function isLoopback(host: string): boolean {
  const name = hostname(host).toLowerCase();
  return name === "localhost" || name === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** certs.d/<host>/: every *.crt is a CA; a *.cert needs the *.key of the same name. */
export function loadTlsMaterial(certsDir: string, host: string): TlsMaterial {
  const dir = join(certsDir, host);
  let files: string[];
  try {
    files = readdirSync(dir).sort();
  } catch {
    return {};
  }
  const material: TlsMaterial = {};
  const ca = files.filter((f) => f.endsWith(".crt")).map((f) => readFileSync(join(dir, f), "utf8"));
  if (ca.length > 0) material.ca = ca;
  for (const certFile of files.filter((f) => f.endsWith(".cert"))) {
    const keyFile = `${certFile.slice(0, -".cert".length)}.key`;
    if (!files.includes(keyFile)) throw invalidArgument(`${join(dir, certFile)}: client certificate without its key ${keyFile}`);
    material.cert = readFileSync(join(dir, certFile), "utf8");
    material.key = readFileSync(join(dir, keyFile), "utf8");
  }
  for (const keyFile of files.filter((f) => f.endsWith(".key"))) {
    if (!files.includes(`${keyFile.slice(0, -".key".length)}.cert`)) throw invalidArgument(`${join(dir, keyFile)}: client key without its certificate`);
  }
  return material;
}


export class RegistryHosts {
  private readonly agents = new Map<string, Agent>();
  private readonly tls = new Map<string, ConnectionOptions>();
  private readonly certsDir: string;
  private readonly insecure: Set<string>;
  private readonly plainHttp: Set<string>;
  private readonly mirrors: Record<string, Endpoint[]>;

  constructor(options: HostsOptions = {}) {
    this.certsDir = options.certsDir ?? defaultCertsDir;
    this.insecure = new Set(options.insecure ?? []);
    this.plainHttp = new Set(options.plainHttp ?? []);
    this.mirrors = Object.fromEntries(Object.entries(options.mirrors ?? {}).map(([name, list]) => [name, list.map((m) => this.mirrorEndpoint(m))]));
  }

  /** A mirror URL names its scheme, or gets the host's (HTTPS, plus HTTP where allowed). */
  private mirrorEndpoint(mirror: string): Endpoint {
    const match = /^(?:(https?):\/\/)?([^/]+)\/?$/.exec(mirror);
    if (!match) throw invalidArgument(`registry mirror "${mirror}": expected [http[s]://]host[:port]`);
    const scheme = match[1] as Scheme | undefined;
    const host = match[2]!;
    return { host, schemes: scheme ? [scheme] : this.schemesFor(host), mirror: true };
  }

  isInsecure(host: string): boolean {
    return this.insecure.has(host) || this.insecure.has(hostname(host));
  }

  /** Plain HTTP alone where asked for; else HTTPS first, plain HTTP after it for insecure and loopback hosts. */
  schemesFor(host: string): Scheme[] {
    if (this.plainHttp.has(host)) return ["http"];
    return this.isInsecure(host) || isLoopback(host) ? ["https", "http"] : ["https"];
  }

  /** Mirrors (for pulls) then the registry. */
  endpoints(registry: string, purpose: "pull" | "push"): Endpoint[] {
    const host = registry === dockerHub ? "registry-1.docker.io" : registry;
    const own: Endpoint = { host, schemes: this.schemesFor(host), mirror: false };
    return purpose === "pull" ? [...(this.mirrors[registry] ?? []), own] : [own];
  }

  /** How to reach a host over TLS: its certs.d material (read once) and whether to verify. */
  tlsOptions(host: string): ConnectionOptions {
    let options = this.tls.get(host);
    if (!options) {
      const material = loadTlsMaterial(this.certsDir, host);
      options = {
        // Added to the public roots, as Docker adds certs.d CAs to the system pool.
        ...(material.ca ? { ca: [...rootCertificates, ...material.ca] } : {}),
        ...(material.cert ? { cert: material.cert, key: material.key } : {}),
        rejectUnauthorized: !this.isInsecure(host),
      };
      this.tls.set(host, options);
    }
    return options;
  }

  /** The connection pool for a host. */
  agentFor(host: string): Agent {
    let agent = this.agents.get(host);
    if (!agent) {
      agent = new Agent({ connect: this.tlsOptions(host) });
      this.agents.set(host, agent);
    }
    return agent;
  }

  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }
}
