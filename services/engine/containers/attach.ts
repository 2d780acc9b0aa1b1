// POST /containers/{id}/attach, hijacked: the output is the json log followed from the
// moment of the attach (or from the start with logs=1), framed unless the container has
// a TTY; stdin goes to the container's stdin FIFO. The stream ends once the next run has
// ended and its output is all read (the shim exits only after writing everything), or
// when the client goes away entirely. A client's half-close ends stdin, never the stream.
import type { Backend } from "../backend.ts";
import { frame, takeOver, type RequestContext } from "../http.ts";
import { queryBool } from "../query.ts";
import type { ContainerManager } from "./lifecycle.ts";
import { follow, LogCursor, logSize } from "./logfile.ts";
import { stdinFifoOf } from "./paths.ts";

export async function attach(ctx: RequestContext, backend: Backend, manager: ContainerManager): Promise<void> {
  const record = manager.get(ctx.params.id!);
  const q = ctx.query;
  const wantStdin = queryBool(q, "stdin") && Boolean(record.Config.OpenStdin);
  const wantStdout = queryBool(q, "stdout");
  const wantStderr = queryBool(q, "stderr");
  const replay = queryBool(q, "logs");
  const live = queryBool(q, "stream");
  const tty = Boolean(record.Config.Tty);
  const rt = manager.runtime(record.Id);
  // Decided before the takeover, so output written from here on is not missed.
  const cursor = new LogCursor(record.LogPath, replay ? 0 : logSize(record.LogPath));
  const end = rt.nextEnd();
  const socket = takeOver(ctx);
  const gone = new AbortController();
  socket.on("close", () => gone.abort());
  socket.on("error", () => gone.abort());
  backend.events.publish("container", "attach", record.Id, { ...(record.Config.Labels ?? {}), image: record.Config.Image ?? "", name: record.Name.slice(1) });

  if (wantStdin) {
    const writer = rt.stdinWriter(stdinFifoOf(backend.options.state, record.Id));
    if (ctx.head.length > 0) writer.write(ctx.head);
    socket.on("data", (chunk: Buffer) => {
      if (!writer.write(chunk)) {
        socket.pause();
        writer.once("drain", () => socket.resume());
      }
    });
    socket.on("end", () => {
      if (record.Config.StdinOnce) void manager.stdinEnded(record.Id);
    });
  } else {
    // Input nobody reads is drained, so the client's writes (and its EOF) never block.
    socket.on("data", () => undefined);
  }
  socket.resume();

  try {
    // Without `stream`, only the replay: what the log holds now.
    const done = live ? end.promise : Promise.resolve();
    for await (const entry of follow(cursor, done, gone.signal)) {
      if (gone.signal.aborted) break;
      const isErr = entry.stream === "stderr";
      if (isErr ? !wantStderr : !wantStdout) continue;
      const payload = Buffer.from(entry.log, "utf8");
      const ok = socket.write(tty ? payload : frame(isErr ? 2 : 1, payload));
      if (!ok) await new Promise<void>((resolve) => {
        socket.once("drain", resolve);
        socket.once("close", resolve);
      });
    }
  } finally {
    end.cancel();
    if (!socket.destroyed) socket.end();
  }
}
