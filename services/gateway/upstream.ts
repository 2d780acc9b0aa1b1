// The gateway's connections to the service processes: one HTTP/2 session per service
// socket, shared by every client, and an admission queue in front of each. At most
// `maxStreams` calls are open on a session (what the service advertises, so it never
// refuses one); the rest wait here, in order, at most `maxQueued` of them. A waiting
// call whose client goes away or whose deadline passes leaves the queue without ever
// reaching the service. Sessions read their socket eagerly (core/eager-read-socket.ts):
// with the bound on open calls, that is what keeps the two directions from wedging.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import net from "node:net";
import { EagerReadSocket } from "../../core/eager-read-socket.ts";
import { flowControlWindow, widenSessionWindow } from "../../core/flow-control.ts";

/** A call's place in a queue; cancel() before it started leaves it, after does nothing. */
export interface Admission {
  cancel(): void;
}

/** Opens the call's stream to the service (throws when the session cannot be used). */
export type OpenUpstream = (headers: OutgoingHttpHeaders) => ClientHttp2Stream;

/** Called once a slot is free: open the call with `open`, release() once its stream is closed. */
export type OnAdmitted = (open: OpenUpstream, release: () => void) => void;

interface Upstream {
  session?: ClientHttp2Session;
  open: number;
  waiting: Set<OnAdmitted>;
}

const upstreamConnectionWindow = 8 * flowControlWindow;

export class UpstreamPool {
  private readonly upstreams = new Map<string, Upstream>();

  private readonly maxStreams: number;
  private readonly maxQueued: number;

  constructor(maxStreams: number, maxQueued: number) {
    this.maxStreams = maxStreams;
    this.maxQueued = maxQueued;
  }

  /** Undefined when the queue for `socketPath` is full (the caller answers UNAVAILABLE). */
  admit(socketPath: string, onAdmitted: OnAdmitted): Admission | undefined {
    const upstream = this.upstream(socketPath);
    if (upstream.open < this.maxStreams && upstream.waiting.size === 0) {
      this.start(socketPath, upstream, onAdmitted);
      return { cancel() {} };
    }
    if (upstream.waiting.size >= this.maxQueued) return undefined;
    upstream.waiting.add(onAdmitted);
    return { cancel: () => upstream.waiting.delete(onAdmitted) };
  }

  closeAll(): void {
    for (const upstream of this.upstreams.values()) {
      upstream.waiting.clear();
      upstream.session?.close();
    }
    this.upstreams.clear();
  }

  private upstream(socketPath: string): Upstream {
    let upstream = this.upstreams.get(socketPath);
    if (!upstream) {
      upstream = { open: 0, waiting: new Set() };
      this.upstreams.set(socketPath, upstream);
    }
    return upstream;
  }

  private start(socketPath: string, upstream: Upstream, onAdmitted: OnAdmitted): void {
    upstream.open++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      upstream.open--;
      this.drain(socketPath, upstream);
    };
    onAdmitted((headers) => this.session(socketPath, upstream).request(headers, { endStream: false }), release);
  }

  /** Starts waiting calls while slots are free (a released slot goes to the oldest). */
  private drain(socketPath: string, upstream: Upstream): void {
    for (const next of upstream.waiting) {
      if (upstream.open >= this.maxStreams) return;
      upstream.waiting.delete(next);
      this.start(socketPath, upstream, next);
    }
  }

  private session(socketPath: string, upstream: Upstream): ClientHttp2Session {
    const existing = upstream.session;
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const session = http2.connect("http://localhost", {
      createConnection: () => new EagerReadSocket(net.connect(socketPath)),
      settings: { initialWindowSize: flowControlWindow },
      // Calls are bounded above; the session's own 10 MiB default cut a burst short
      // with ENHANCE_YOUR_CALM resets.
      maxSessionMemory: 64,
    });
    // A stream whose client reads slowly holds its share of the connection's window;
    // a window of several streams' worth keeps one slow client from stalling the rest.
    widenSessionWindow(session, upstreamConnectionWindow);
    const forget = () => {
      if (upstream.session === session) upstream.session = undefined;
    };
    session.on("error", forget);
    session.on("close", forget);
    // The service is shutting down (or closed an idle connection): let calls in flight
    // finish, then close, so its graceful shutdown is not held up by us.
    session.on("goaway", () => {
      forget();
      session.close();
    });
    upstream.session = session;
    return session;
  }
}
