// Whether something listens on a UNIX socket: a connection is opened and dropped at
// once, so it works for any protocol (gRPC, redis) and tells "up" from "not yet".
import net from "node:net";

export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(path);
    conn.once("connect", () => {
      conn.destroy();
      resolve(true);
    });
    conn.once("error", () => resolve(false));
  });
}
