// Answering a registry's 401: Basic with the stored credentials, or Bearer — ask the
// token endpoint the challenge names (realm, service, scope) and reuse the token for
// those scopes until it expires. Every answer is tried once: a second 401 is final.
import { request } from "./http.ts";
import { BerthError } from "../errors.ts";
import type { Credentials } from "./credentials.ts";
import { readCapped, responseError, transportError } from "./errors.ts";
import type { RegistryHosts } from "./hosts.ts";

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** RFC 7235 challenges: `Bearer realm="…",service="…",scope="…", Basic realm="…"`. */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  const token = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*/y;
  const param = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/y;
  let at = 0;
  while (at < header.length) {
    token.lastIndex = at;
    const scheme = token.exec(header);
    if (!scheme) break;
    at = token.lastIndex;
    const challenge: Challenge = { scheme: scheme[1]!.toLowerCase(), params: {} };
    while (at < header.length) {
      param.lastIndex = at;
      const p = param.exec(header);
      if (!p) break;
      challenge.params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
      at = param.lastIndex;
    }
    challenges.push(challenge);
    while (header[at] === "," || header[at] === " ") at++;
  }
  return challenges;
}

/** Scopes with the actions for one resource merged: [repo:x:pull, repo:x:pull,push] → [repo:x:pull,push]. */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const cut = scope.lastIndexOf(":");
    if (cut <= 0) continue;
    const resource = scope.slice(0, cut);
    const actions = byResource.get(resource) ?? new Set<string>();
    for (const action of scope.slice(cut + 1).split(",")) if (action) actions.add(action);
    byResource.set(resource, actions);
  }
  return [...byResource.entries()].map(([resource, actions]) => `${resource}:${[...actions].sort().join(",")}`).sort();
}

interface CachedToken {
  header: string;
  expiresAt: number;
}

type HostScheme = { scheme: "basic" } | { scheme: "bearer"; realm: string; service: string };

/** Tokens last 60 s unless the endpoint says otherwise; renew a little early. */
const defaultTokenSeconds = 60;

/**
 * What Authorizers acting for the same credentials may share: each host's scheme, the
 * tokens, and the token requests under way. (Never across credentials: a token stands
 * for whoever asked for it.)
 */
export class AuthCache {
  readonly schemes = new Map<string, HostScheme>();
  readonly tokens = new Map<string, CachedToken>();
  /** Token requests under way, by host and scopes. */
  readonly inFlight = new Map<string, Promise<string>>();
}

export class Authorizer {
  private readonly schemes: Map<string, HostScheme>;
  private readonly tokens: Map<string, CachedToken>;
  private readonly inFlight: Map<string, Promise<string>>;
  private readonly credentials = new Map<string, Promise<Credentials | undefined>>();
  /** Token requests made (tests check that tokens are reused). */
  tokenRequests = 0;

  private readonly hosts: RegistryHosts;
  private readonly lookup: (registry: string) => Promise<Credentials | undefined>;
  private readonly userAgent: string;

  constructor(hosts: RegistryHosts, lookup: (registry: string) => Promise<Credentials | undefined>, userAgent: string, cache = new AuthCache()) {
    this.hosts = hosts;
    this.lookup = lookup;
    this.userAgent = userAgent;
    this.schemes = cache.schemes;
    this.tokens = cache.tokens;
    this.inFlight = cache.inFlight;
  }

  private credentialsFor(registry: string): Promise<Credentials | undefined> {
    let found = this.credentials.get(registry);
    if (!found) {
      found = this.lookup(registry);
      this.credentials.set(registry, found);
      found.catch(() => this.credentials.delete(registry));
    }
    return found;
  }

  private static tokenKey(host: string, scopes: string[]): string {
    return `${host} ${mergeScopes(scopes).join(" ")}`;
  }

  /** The Authorization header to send before any challenge: what worked for this host before. */
  async header(host: string, registry: string, scopes: string[]): Promise<string | undefined> {
    const known = this.schemes.get(host);
    if (!known) return undefined;
    if (known.scheme === "basic") return this.basicHeader(registry);
    const cached = this.tokens.get(Authorizer.tokenKey(host, scopes));
    if (cached && cached.expiresAt > Date.now()) return cached.header;
    return this.fetchToken(host, registry, known.realm, known.service, mergeScopes(scopes));
  }

  private async basicHeader(registry: string): Promise<string | undefined> {
    const creds = await this.credentialsFor(registry);
    if (!creds) return undefined;
    return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
  }

  /**
   * The header that answers a 401's challenge. Throws "unauthorized" when there is
   * nothing new to try: no usable challenge, no credentials for Basic, or the answer
   * is the one the registry just refused.
   */
  async answer(host: string, registry: string, wwwAuthenticate: string, scopes: string[], refused: string | undefined, url: string): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    let header: string | undefined;
    if (bearer) {
      const realm = bearer.params.realm;
      if (!realm) throw new BerthError("failed precondition", `unauthorized: ${url}: Bearer challenge without a realm`);
      const service = bearer.params.service ?? "";
      this.schemes.set(host, { scheme: "bearer", realm, service });
      const challenged = bearer.params.scope ? bearer.params.scope.split(" ") : [];
      const all = mergeScopes([...scopes, ...challenged]);
      // Requests running side by side all meet the challenge; one token serves them all.
      const cached = this.tokens.get(Authorizer.tokenKey(host, all));
      header = cached && cached.header !== refused && cached.expiresAt > Date.now() ? cached.header : await this.fetchToken(host, registry, realm, service, all, refused);
    } else if (basic) {
      this.schemes.set(host, { scheme: "basic" });
      header = await this.basicHeader(registry);
      if (!header) throw new BerthError("failed precondition", `unauthorized: ${url}: the registry wants a user name and password, and there are no credentials for ${registry}`);
    } else {
      throw new BerthError("failed precondition", `unauthorized: ${url}: 401 without a Basic or Bearer challenge (WWW-Authenticate: ${JSON.stringify(wwwAuthenticate)})`);
    }
    if (header === refused) throw new BerthError("failed precondition", `unauthorized: ${url}: the registry refused the credentials for ${registry}`);
    return header;
  }

  /** One token request per host and scopes at a time; callers that come meanwhile share its answer. */
  private fetchToken(host: string, registry: string, realm: string, service: string, scopes: string[], refused?: string): Promise<string> {
    const key = Authorizer.tokenKey(host, scopes);
    const running = this.inFlight.get(key);
    if (running) return running.then((header) => (header === refused ? this.requestToken(host, registry, realm, service, scopes) : header));
    const request = this.requestToken(host, registry, realm, service, scopes).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, request);
    return request;
  }

  private async requestToken(host: string, registry: string, realm: string, service: string, scopes: string[]): Promise<string> {
    const creds = await this.credentialsFor(registry);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new BerthError("failed precondition", `unauthorized: token realm ${JSON.stringify(realm)} is not a URL`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new BerthError("failed precondition", `unauthorized: token realm ${JSON.stringify(realm)} is not an http(s) URL`);
    const headers: Record<string, string> = { "user-agent": this.userAgent };
    let method: "GET" | "POST" = "GET";
    let body: string | undefined;
    if (creds?.identityToken) {
      // An identity token is an OAuth2 refresh token: exchanged with a form POST.
      method = "POST";
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: creds.identityToken, service, client_id: "berth" });
      for (const scope of scopes) form.append("scope", scope);
      body = form.toString();
      headers["content-type"] = "application/x-www-form-urlencoded";
    } else {
      if (service) url.searchParams.set("service", service);
      for (const scope of scopes) url.searchParams.append("scope", scope);
      if (creds) {
        url.searchParams.set("account", creds.username);
        headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
      }
    }
    this.tokenRequests++;
    let res;
    try {
      res = await request(url, { method, headers, body, dispatcher: this.hosts.agentFor(url.host) });
    } catch (err) {
      throw transportError(err, method, url.href);
    }
    if (res.statusCode !== 200) throw await responseError(res, method, url.href);
    const text = (await readCapped(res.body, 1024 * 1024)).toString("utf8");
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      doc = JSON.parse(text);
    } catch {
      throw new BerthError("failed precondition", `token endpoint ${url.origin}${url.pathname}: answer is not JSON`);
    }
    const token = typeof doc.token === "string" && doc.token ? doc.token : typeof doc.access_token === "string" ? doc.access_token : "";
    if (!token) throw new BerthError("failed precondition", `token endpoint ${url.origin}${url.pathname}: no token in the answer`);
    const seconds = typeof doc.expires_in === "number" && doc.expires_in > 0 ? doc.expires_in : defaultTokenSeconds;
    const issued = typeof doc.issued_at === "string" && !Number.isNaN(Date.parse(doc.issued_at)) ? Math.min(Date.parse(doc.issued_at), Date.now()) : Date.now();
    const header = `Bearer ${token}`;
    this.tokens.set(Authorizer.tokenKey(host, scopes), { header, expiresAt: issued + seconds * 1000 - Math.min(10_000, seconds * 100) });
    return header;
  }
}
