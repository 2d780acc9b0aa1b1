// Removing every container an engine test made, even when the test failed midway:
// through docker first, then ctr in the engine's namespace for anything docker missed.
import { sleep, type Daemon } from "./harness.ts";

export async function removeEveryContainer(daemon: Daemon): Promise<void> {
  const ids = daemon.docker(["ps", "-aq", "--no-trunc"]).stdout.split("\n").filter(Boolean);
  if (ids.length > 0) daemon.docker(["rm", "-f", ...ids]);
  const tasks = daemon.ctr(["tasks", "ls", "-q"], undefined, "moby").stdout.split("\n").filter(Boolean);
  for (const id of tasks) {
    daemon.ctr(["tasks", "kill", "-s", "SIGKILL", id], undefined, "moby");
    for (let i = 0; i < 100 && daemon.ctr(["tasks", "delete", id], undefined, "moby").code !== 0; i++) await sleep(50);
  }
  for (const id of daemon.ctr(["containers", "ls", "-q"], undefined, "moby").stdout.split("\n").filter(Boolean)) daemon.ctr(["containers", "rm", id], undefined, "moby");
}
