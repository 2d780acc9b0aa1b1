// The build benches' context (bench/build.ts against dockerd, bench/build-phases.ts for
// Berth's phases): the same files and Dockerfile, so the two measure the same build.
import { mkdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";

/** Writes `<base>/context`: a 20 MB file, 200 small files, and an 8-step Dockerfile using them; returns the context's path. */
export function writeBenchContext(base: string): string {
  const context = join(base, "context");
  mkdirSync(join(context, "small"), { recursive: true });
  writeFileSync(join(context, "big.bin"), randomBytes(20 << 20));
  for (let i = 0; i < 200; i++) writeFileSync(join(context, "small", `f${i}.txt`), `file ${i}\n`);
  writeFileSync(
    join(context, "Dockerfile"),
    ["FROM busybox", "COPY big.bin /data/big.bin", "COPY small/ /data/small/", "RUN ls /data/small | wc -l > /count", "RUN echo built > /built", "ENV APP=bench", "WORKDIR /data", 'CMD ["cat", "/count"]', ""].join("\n"),
  );
  return context;
}

/** Changes one of the 200 small files (the "one file changed" build). */
export function changeOneFile(context: string, text: string): void {
  writeFileSync(join(context, "small", "f7.txt"), text);
}
