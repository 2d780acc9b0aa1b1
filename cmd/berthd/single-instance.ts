// One berthd per root. The lock is an abstract UNIX socket named after the root's
// real path: the kernel releases it when the holder dies, even by SIGKILL, so a
// crash never leaves a stale lock behind.
import { createHash } from "node:crypto";
import { realpathSync } from "node:fs";
import net from "node:net";

export function acquireRootLock(root: string): Promise<net.Server> {
  const key = createHash("sha256").update(realpathSync(root)).digest("hex").slice(0, 32);
  const server = net.createServer();
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      reject(
        err.code === "EADDRINUSE"
          ? new Error(`another berthd is already running with root ${root}`)
          : err,
      );
    });
    server.listen(`\0berthd-root-${key}`, () => {
      server.unref();
      resolve(server);
    });
  });
}
