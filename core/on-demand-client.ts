// Clients, inside Berth's own processes, for a process that berthd starts on demand
// (core/routes.ts): while it is not running its socket is absent, so before a call the
// client asks berthd to start it (berth.internal.v1.Processes on berthd's in-process
// socket) and connects anew. Each call goes out on a connection made beforehand: a
// retiring process removes its socket first and still takes, for a moment, calls on
// the connections it has (core/grpc-server.ts), so a call cannot fall into the gap.
import { existsSync } from "node:fs";
import { connectivityState } from "@grpc/grpc-js";
import type { Channel, Client, TsProtoServiceDefinition } from "nice-grpc";
import { serviceSocketPath } from "./config.ts";
import { fromClientError, unavailable } from "./errors.ts";
import { ProcessesDefinition } from "./gen/berth/internal/v1/processes.ts";
import { clientOn, grpcClient, newUnixChannel } from "./grpc-client.ts";
import { inProcess } from "./routes.ts";

/** How long a start may take: berthd gives a process 10 s to listen, and may be queueing starts. */
const startTimeoutMs = 30_000;

/** Makes sure process `name` accepts calls on its socket, asking berthd to start it if needed. */
export async function startProcess(state: string, name: string): Promise<void> {
  try {
    await grpcClient(ProcessesDefinition, serviceSocketPath(state, inProcess)).ready({ name }, { signal: AbortSignal.timeout(startTimeoutMs) });
  } catch (err) {
    throw fromClientError(err, `starting process ${name}`);
  }
}

/**
 * A replaced channel is closed this much later: a call may have taken a client on it
 * and not started yet (closing it would fail that call), and calls already open on it
 * finish on it anyway.
 */
const replacedChannelCloseMs = 60_000;

const connectTimeoutMs = 10_000;
/** Connection attempts, each after making sure the process runs, before a call fails. */
const connectAttempts = 3;

/** Whether `channel` gets connected (READY) within `timeoutMs`; false as soon as an attempt fails. */
function connected(channel: Channel, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const check = () => {
      const state = channel.getConnectivityState(true);
      if (state === connectivityState.READY) return resolve(true);
      if (state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN) return resolve(false);
      channel.watchConnectivityState(state, deadline, (err) => (err ? resolve(false) : check()));
    };
    check();
  });
}

/** One process's connection: a fresh channel each time the process had to be started. */
class OnDemandConnection {
  private channel: Channel | undefined;
  /** The current channel's connection failed: the next call replaces it. */
  private failed = false;
  private readonly clients = new Map<TsProtoServiceDefinition, unknown>();
  /** The start under way, shared by the calls that found the process stopped. */
  private starting: Promise<void> | undefined;
  private readonly state: string;
  private readonly name: string;
  private readonly socket: string;

  constructor(state: string, name: string) {
    this.state = state;
    this.name = name;
    this.socket = serviceSocketPath(state, name);
  }

  async client<D extends TsProtoServiceDefinition>(definition: D): Promise<Client<D>> {
    for (let attempt = 1; ; attempt++) {
      if (this.starting) await this.starting;
      if (this.needsStart()) {
        this.starting ??= this.start().finally(() => (this.starting = undefined));
        await this.starting;
      }
      const channel = this.channel!;
      // Connected before the call is made: a retiring process removes its socket first
      // and still takes, for a moment, calls on the connections it has, but a connection
      // attempted after the removal fails (and then the process is started anew).
      if (await connected(channel, connectTimeoutMs)) {
        if (channel !== this.channel) return clientOn(definition, channel);
        let client = this.clients.get(definition) as Client<D> | undefined;
        if (!client) {
          client = clientOn(definition, channel);
          this.clients.set(definition, client);
        }
        return client;
      }
      // The next attempt goes through berthd (which starts the process, or a fresh one
      // once a retiring or crashed one is gone; a crashed one leaves its socket file) and
      // a new channel: this one keeps reporting its failure until its reconnect backoff
      // is over, to this call and to the others sharing it.
      if (channel === this.channel) this.failed = true;
      if (attempt === connectAttempts) throw unavailable(`cannot connect to the ${this.name} process on ${this.socket}`);
    }
  }

  /**
   * Whether berthd must first make sure the process accepts calls (starting it, or a
   * fresh one once a retiring one exited) and a new channel be made: none yet, the
   * socket gone, or the channel's connection failed.
   */
  private needsStart(): boolean {
    if (!this.channel || this.failed || !existsSync(this.socket)) return true;
    const state = this.channel.getConnectivityState(false);
    return state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN;
  }

  private async start(): Promise<void> {
    await startProcess(this.state, this.name);
    this.replaceChannel();
  }

  private replaceChannel(): void {
    const old = this.channel;
    this.failed = false;
    if (old) setTimeout(() => old.close(), replacedChannelCloseMs).unref();
    // Its own connection: the process it reaches may be a fresh one right after a
    // connect to the old one failed.
    this.channel = newUnixChannel(this.socket, true);
    this.clients.clear();
  }
}

const connections = new Map<string, OnDemandConnection>();

/**
 * A client for `definition` served by process `name`, started through berthd whenever
 * its socket is absent. Same calls as a nice-grpc client.
 */
export function onDemandClient<D extends TsProtoServiceDefinition>(definition: D, state: string, name: string): Client<D> {
  const key = serviceSocketPath(state, name);
  let connection = connections.get(key);
  if (!connection) {
    connection = new OnDemandConnection(state, name);
    connections.set(key, connection);
  }
  const conn = connection;
  const methods: Record<string, unknown> = {};
  for (const [method, spec] of Object.entries(definition.methods)) {
    type Call = (request: unknown, options?: unknown) => unknown;
    const call = async (request: unknown, options: unknown) => ((await conn.client(definition)) as unknown as Record<string, Call>)[method]!(request, options);
    methods[method] = spec.responseStream
      ? async function* (request: unknown, options?: unknown) {
          yield* (await call(request, options)) as AsyncIterable<unknown>;
        }
      : call;
  }
  return methods as Client<D>;
}
