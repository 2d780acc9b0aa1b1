// Where the real ctr's time goes, RPC by RPC: ctr runs under strace, which records the
// bytes it writes to and reads from the daemon's socket with timestamps; the HTTP/2
// frames in them are parsed back, request headers decoded (core/hpack.ts) for the gRPC
// method, and each call timed from its request headers to the end of its response.
// Only ctr is traced, so the daemon side runs at full speed.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HpackDecoder } from "../core/hpack.ts";

export interface CallTime {
  method: string;
  ms: number;
  /** How long ctr waited, after the previous answer ended (or ctr started), before making this call. */
  idleBeforeMs: number;
}

export function straceInstalled(): boolean {
  return spawnSync("strace", ["-V"]).status === 0;
}

const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Runs `ctr args` under strace; returns its calls in the order they were made. */
export function traceCtr(args: string[]): CallTime[] {
  return traceClient("ctr", args);
}

/** Any gRPC client speaking HTTP/2 on one socket (berthctl too), under strace. */
export function traceClient(command: string, args: string[]): CallTime[] {
  const dir = mkdtempSync(join(tmpdir(), "berth-ctr-trace-"));
  try {
    const log = join(dir, "strace.txt");
    const r = spawnSync("strace", ["-f", "-tt", "-xx", "-s", "1048576", "-e", "trace=read,write", "-e", "signal=none", "-o", log, command, ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} under strace failed (${r.status}): ${r.stderr}`);
    return callsIn(readFileSync(log, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function callsIn(straceLog: string): CallTime[] {
  let socketFd: string | undefined;
  const pending = { write: Buffer.alloc(0), read: Buffer.alloc(0) };
  const decoder = new HpackDecoder();
  const started = new Map<number, { call: CallTime; at: number }>();
  const calls: CallTime[] = [];
  let lastEvent: number | undefined;
  // With threads, strace splits a call: "read(6,  <unfinished ...>" then "<... read resumed>"data", …) = n".
  const unfinishedRead = new Map<string, string>();
  for (const line of straceLog.split("\n")) {
    const head = /^(\d+)\s+(\d+):(\d+):([\d.]+) (.*)$/.exec(line);
    if (!head) continue;
    const [pid, rest] = [head[1]!, head[5]!];
    const at = (Number(head[2]) * 3600 + Number(head[3]) * 60 + Number(head[4])) * 1000;
    let direction: "write" | "read";
    let fd: string;
    let hex: string;
    let written: number | undefined;
    const call = /^(write|read)\((\d+), (?:"((?:\\x[0-9a-f]{2})*)"(?:, \d+\) = (-?\d+))?)?/.exec(rest);
    const resumed = /^<\.\.\. read resumed>"((?:\\x[0-9a-f]{2})*)", \d+\) = (-?\d+)/.exec(rest);
    if (call && call[1] === "read" && call[3] === undefined) {
      unfinishedRead.set(pid, call[2]!);
      continue;
    }
    if (call) {
      [direction, fd, hex] = [call[1] as "write" | "read", call[2]!, call[3] ?? ""];
      written = call[4] === undefined ? undefined : Number(call[4]);
    } else if (resumed && unfinishedRead.has(pid)) {
      [direction, fd, hex, written] = ["read", unfinishedRead.get(pid)!, resumed[1]!, Number(resumed[2])];
      unfinishedRead.delete(pid);
    } else {
      continue;
    }
    if (written !== undefined && written <= 0) continue;
    lastEvent ??= at;
    const all = Buffer.from(hex.replace(/\\x/g, ""), "hex");
    const bytes = written === undefined ? all : all.subarray(0, written);
    if (socketFd === undefined) {
      if (direction === "write" && bytes.subarray(0, preface.length).equals(preface)) {
        socketFd = fd;
        pending.write = Buffer.from(bytes.subarray(preface.length));
      }
      continue;
    }
    if (fd !== socketFd) continue;
    let buffer = Buffer.concat([pending[direction], bytes]);
    while (buffer.length >= 9) {
      const length = buffer.readUIntBE(0, 3);
      if (buffer.length < 9 + length) break;
      const [type, flags, stream] = [buffer[3]!, buffer[4]!, buffer.readUInt32BE(5) & 0x7fffffff];
      let payload = buffer.subarray(9, 9 + length);
      if (direction === "write" && type === 0x1) {
        if (flags & 0x8) payload = payload.subarray(1, payload.length - payload[0]!);
        if (flags & 0x20) payload = payload.subarray(5);
        const path = decoder.decode(payload).find(([name]) => name === ":path")?.[1];
        if (path) {
          // Listed in the order they were made; the time is filled in when the answer ends.
          const call = { method: path.replace(/^\/containerd\.services\./, ""), ms: NaN, idleBeforeMs: Math.max(0, at - (lastEvent ?? at)) };
          calls.push(call);
          started.set(stream, { call, at });
        }
      }
      if (direction === "read" && (type === 0x0 || type === 0x1) && flags & 0x1) {
        const begun = started.get(stream);
        if (begun) begun.call.ms = at - begun.at;
        lastEvent = Math.max(lastEvent ?? at, at);
        started.delete(stream);
      }
      buffer = buffer.subarray(9 + length);
    }
    pending[direction] = Buffer.from(buffer);
  }
  return calls;
}

/** ctr's calls over several traced runs on each engine. */
export interface TracedRounds {
  /** engine → call key ("tasks.v1.Tasks/Get (2)": the k-th call of a method) → its times, ms. */
  perCall: Map<string, Map<string, number[]>>;
  /** engine → ctr's own time between its calls, per run, ms. */
  between: Map<string, number[]>;
  /** The call keys in the order of the first engine's first run. */
  callOrder: string[];
}

/** Traces `rounds` runs of ctr on each engine (interleaved), `argsOf` giving each run's arguments; empty without strace. */
export function traceRounds<E extends { name: string }>(engines: readonly E[], rounds: number, argsOf: (engine: E) => string[]): TracedRounds {
  const traced: TracedRounds = { perCall: new Map(engines.map((e) => [e.name, new Map()])), between: new Map(engines.map((e) => [e.name, []])), callOrder: [] };
  if (!straceInstalled()) return traced;
  for (let round = 0; round < rounds; round++) {
    for (const engine of engines) {
      const seen = new Map<string, number>();
      let idle = 0;
      for (const call of traceCtr(argsOf(engine))) {
        const k = (seen.get(call.method) ?? 0) + 1;
        seen.set(call.method, k);
        const key = k > 1 ? `${call.method} (${k})` : call.method;
        if (engine === engines[0] && round === 0) traced.callOrder.push(key);
        const times = traced.perCall.get(engine.name)!;
        if (!times.has(key)) times.set(key, []);
        if (!Number.isNaN(call.ms)) times.get(key)!.push(call.ms);
        idle += call.idleBeforeMs;
      }
      traced.between.get(engine.name)!.push(idle);
    }
  }
  return traced;
}
