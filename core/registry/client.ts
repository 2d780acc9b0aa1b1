// One HTTP exchange with a registry, done right once for every operation: the
// endpoint's scheme (HTTPS, or the plain-HTTP fallback where allowed), the 401
// handshake, redirects for GET/HEAD (blob storage elsewhere), retries for what may
// pass on a second try, and failures turned into BerthErrors naming the URL.
import { Readable } from "node:stream";
import { request } from "./http.ts";
import { directGet, type DirectBody } from "./direct-get.ts";
import { BerthError, messageWithoutKind } from "../errors.ts";
import { Authorizer, type AuthCache } from "./auth.ts";
import { getCredentials, type Credentials } from "./credentials.ts";
import { discardBody, responseError, transportError } from "./errors.ts";
import { RegistryHosts, type Endpoint, type HostsOptions, type Scheme } from "./hosts.ts";
import { dockerHub } from "./reference.ts";
import { withRetry, type RetryOptions } from "./retry.ts";

export interface RegistryClientOptions extends HostsOptions {
  /** Where short names (busybox) go; default docker.io. */
  defaultRegistry?: string;
  /** Docker's config.json to read credentials from (default ~/.docker/config.json). */
  dockerConfig?: string;
  /** Credentials by registry name, instead of config.json. */
  credentials?: (registry: string) => Promise<Credentials | undefined>;
  retry?: RetryOptions;
  userAgent?: string;
  /** Cancels every request of this client, and the waits between retries (a cancelled job). */
  signal?: AbortSignal;
  /** Schemes and tokens shared with other clients for the same credentials (access.ts). */
  authCache?: AuthCache;
}

export type RequestBody = Buffer | string | (() => AsyncIterable<Uint8Array>);

export interface RegistryRequest {
  method: "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE";
  /** "/v2/…" on the endpoint, or an absolute URL (an upload's Location). */
  path: string;
  headers?: Record<string, string>;
  body?: RequestBody;
  /** Token scopes the request needs, e.g. repository:library/busybox:pull. */
  scopes: string[];
  /** Non-2xx statuses handed back instead of thrown (404 for "does the registry have it?"). */
  accept?: number[];
  /** Retry on 5xx and connection failures (default: for every request whose body can be sent again). */
  retry?: boolean;
  /** A GET whose body is read straight off a connection of its own (direct-get.ts): a blob download. */
  direct?: boolean;
}

/** What the registry code reads a body through: undici's, or a direct GET's (which can also pipeTo). */
export interface ResponseBody extends AsyncIterable<Uint8Array> {
  on(event: "error", listener: () => void): unknown;
  destroy(): unknown;
}

export interface RegistryResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: ResponseBody | DirectBody;
  url: string;
}

export function headerValue(res: { headers: RegistryResponse["headers"] }, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const maxRedirects = 5;

/** Errors raised before any HTTP answer came (refused, reset, TLS handshake garbage). */
const connectFailures = new WeakSet<object>();

function isConnectFailure(err: unknown): err is BerthError {
  return err instanceof BerthError && connectFailures.has(err);
}

export class RegistryClient {
  readonly hosts: RegistryHosts;
  readonly auth: Authorizer;
  readonly defaultRegistry: string;
  readonly retryOptions: RetryOptions;
  private readonly userAgent: string;
  private readonly signal: AbortSignal | undefined;
  /** The scheme that worked for each host, so the fallback is paid once. */
  private readonly schemes = new Map<string, Scheme>();

  constructor(options: RegistryClientOptions = {}) {
    this.hosts = new RegistryHosts(options);
    this.defaultRegistry = options.defaultRegistry ?? dockerHub;
    this.signal = options.signal;
    this.retryOptions = { ...options.retry, ...(options.signal ? { signal: options.signal } : {}) };
    this.userAgent = options.userAgent ?? "berth/0.1";
    const lookup = options.credentials ?? ((registry: string) => getCredentials(registry, options.dockerConfig ? { configPath: options.dockerConfig } : {}));
    this.auth = new Authorizer(this.hosts, lookup, this.userAgent, options.authCache);
  }

  /** Mirrors (for pulls) then the registry itself. */
  endpoints(registry: string, purpose: "pull" | "push"): Endpoint[] {
    return this.hosts.endpoints(registry, purpose);
  }

  /** The registry name credentials are filed under for an endpoint (a mirror's own host). */
  private credentialKey(ep: Endpoint, registry: string): string {
    return ep.mirror ? ep.host : registry;
  }

  async send(ep: Endpoint, registry: string, req: RegistryRequest): Promise<RegistryResponse> {
    const replayable = typeof req.body !== "function";
    if (req.retry === false || (req.retry === undefined && !replayable)) return this.sendOnce(ep, registry, req);
    return withRetry(() => this.sendOnce(ep, registry, req), this.retryOptions);
  }

  /** One try at an endpoint: its schemes in order until one connects (then that one is remembered). */
  private async sendOnce(ep: Endpoint, registry: string, req: RegistryRequest): Promise<RegistryResponse> {
    if (/^https?:\/\//.test(req.path)) return this.authorized(new URL(req.path), ep, registry, req);
    const known = this.schemes.get(ep.host);
    const schemes = known ? [known] : ep.schemes;
    let firstError: BerthError | undefined;
    for (const [i, scheme] of schemes.entries()) {
      const url = new URL(`${scheme}://${ep.host}${req.path}`);
      try {
        const res = await this.authorized(url, ep, registry, req);
        this.schemes.set(ep.host, scheme);
        return res;
      } catch (err) {
        if (!isConnectFailure(err)) {
          // An HTTP answer, even an error: this scheme is the one the host speaks.
          if (err instanceof BerthError && err.kind !== "failed precondition") this.schemes.set(ep.host, scheme);
          throw err;
        }
        if (i + 1 < schemes.length) {
          firstError ??= err;
          continue;
        }
        if (!firstError) throw err;
        throw new BerthError(err.kind, `${messageWithoutKind(err)} (and over ${schemes[0]}: ${messageWithoutKind(firstError)})`);
      }
    }
    throw firstError!;
  }

  /** One request with the 401 handshake: at most one retry, with a fresh answer to the challenge. */
  private async authorized(url: URL, ep: Endpoint, registry: string, req: RegistryRequest): Promise<RegistryResponse> {
    const key = this.credentialKey(ep, registry);
    let authorization = await this.auth.header(ep.host, key, req.scopes);
    for (let attempt = 0; ; attempt++) {
      const res = await this.follow(url, ep, req, authorization);
      if (res.status !== 401 || req.accept?.includes(401)) return this.checked(res, req);
      const challenge = headerValue(res, "www-authenticate") ?? "";
      if (attempt > 0) {
        const err = await responseError({ statusCode: res.status, headers: res.headers, body: res.body }, req.method, res.url);
        throw new BerthError("failed precondition", `${messageWithoutKind(err)} (the registry refused the credentials it asked for)`);
      }
      discardBody(res.body);
      authorization = await this.auth.answer(ep.host, key, challenge, req.scopes, authorization, res.url);
      // A streamed body is gone once sent. The fresh answer is cached: the caller may start over (retryable).
      if (typeof req.body === "function") throw new BerthError("unavailable", `${req.method} ${res.url}: 401 Unauthorized after the body was streamed (an expired token?); start the upload again`);
    }
  }

  private async checked(res: RegistryResponse, req: RegistryRequest): Promise<RegistryResponse> {
    if ((res.status >= 200 && res.status < 300) || req.accept?.includes(res.status)) return res;
    throw await responseError({ statusCode: res.status, headers: res.headers, body: res.body }, req.method, res.url);
  }

  /** Sends, following redirects for GET and HEAD (without credentials once the host changes). */
  private async follow(start: URL, ep: Endpoint, req: RegistryRequest, authorization: string | undefined): Promise<RegistryResponse> {
    let url = start;
    for (let hop = 0; ; hop++) {
      const sameHost = url.host === ep.host;
      const headers: Record<string, string> = { "user-agent": this.userAgent, ...req.headers };
      if (authorization && sameHost) headers.authorization = authorization;
      const body = req.body === undefined ? undefined : typeof req.body === "function" ? Readable.from(req.body()) : req.body;
      let res: { statusCode: number; headers: RegistryResponse["headers"]; body: RegistryResponse["body"] };
      try {
        const signal = this.signal ? { signal: this.signal } : {};
        res =
          req.direct && req.method === "GET" && body === undefined
            ? await directGet(url, { headers, tls: this.hosts.tlsOptions(url.host), ...signal })
            : await request(url, { method: req.method, headers, body, dispatcher: this.hosts.agentFor(url.host), ...signal });
      } catch (err) {
        const failure = transportError(err, req.method, url.href);
        // No HTTP answer at all: the next scheme may connect where this one could not.
        if (!(err instanceof BerthError) && failure.kind === "unavailable") connectFailures.add(failure);
        throw failure;
      }
      const location = res.headers.location;
      if ((req.method === "GET" || req.method === "HEAD") && [301, 302, 303, 307, 308].includes(res.statusCode) && typeof location === "string") {
        discardBody(res.body);
        if (hop >= maxRedirects) throw new BerthError("failed precondition", `${req.method} ${start.href}: more than ${maxRedirects} redirects`);
        url = new URL(location, url);
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url: url.href };
    }
  }

  async close(): Promise<void> {
    await this.hosts.close();
  }
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}
