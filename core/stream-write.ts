// Writing to a stream with backpressure by hand (tar-stream's streamx streams among
// them): after a full write, wait for "drain" — or "close", so a stream destroyed
// meanwhile does not leave the writer waiting forever.

interface WritableLike {
  write(chunk: Buffer): boolean;
  on(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

export async function writeChunk(stream: WritableLike, chunk: Buffer): Promise<void> {
  if (stream.write(chunk)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}
