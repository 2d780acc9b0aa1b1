// The flags that shape a new container (`run`, `containers create`) and the container
// record's spec as JSON: no image library here, so commands that only read containers
// stay free of grpc-js.
import type { Command } from "commander";
import type { Container } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import type { OciMount } from "../../core/oci/spec.ts";
import { CommandError } from "./output.ts";

export const specTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
export const defaultRuntime = "io.containerd.runc.v2";
export const stopSignalLabel = "io.containerd.image.config.stop-signal";

export interface ContainerFlags {
  snapshotter?: string;
  env: string[];
  mount: string[];
  label: string[];
  netHost?: boolean;
  cwd?: string;
  user?: string;
  tty?: boolean;
  privileged?: boolean;
  readOnly?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** The flags `run` and `containers create` share. */
export function withContainerFlags(command: Command): Command {
  return command
    .option("--snapshotter <name>", "snapshotter name. Empty value stands for the default value.", process.env.CONTAINERD_SNAPSHOTTER)
    .option("--env <K=V>", "specify additional container environment variables (e.g. FOO=bar)", collect, [])
    .option("--mount <spec>", "specify additional container mount (e.g. type=bind,src=/tmp,dst=/host,options=rbind:ro)", collect, [])
    .option("--label <k=v>", "specify additional labels (e.g. foo=bar)", collect, [])
    .option("--net-host", "enable host networking for the container")
    .option("--cwd <dir>", "specify the working directory of the process")
    .option("-u, --user <user>", "user[:group] to run as, by name or number")
    .option("-t, --tty", "allocate a TTY for the container")
    .option("--privileged", "run privileged container")
    .option("--read-only", "set the containers filesystem as readonly");
}

/** `type=bind,src=/a,dst=/b,options=rbind:ro` as an OCI mount. */
export function parseMountFlag(text: string): OciMount {
  const mount: Required<OciMount> = { destination: "", type: "bind", source: "", options: [] };
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) throw new CommandError(`invalid mount ${JSON.stringify(text)}: ${JSON.stringify(part)} is not key=value`);
    const [key, value] = [part.slice(0, eq), part.slice(eq + 1)];
    if (key === "type") mount.type = value;
    else if (key === "source" || key === "src") mount.source = value;
    else if (key === "destination" || key === "dst" || key === "target") mount.destination = value;
    else if (key === "options") mount.options = value.split(":").filter(Boolean);
    else throw new CommandError(`invalid mount ${JSON.stringify(text)}: unknown key ${JSON.stringify(key)}`);
  }
  if (!mount.destination.startsWith("/")) throw new CommandError(`invalid mount ${JSON.stringify(text)}: dst must be an absolute path`);
  if (mount.type === "bind" && !mount.source.startsWith("/")) throw new CommandError(`invalid mount ${JSON.stringify(text)}: a bind mount's src must be an absolute path`);
  // A bind mount without rbind/bind would be refused by runc's mount(2) as a bare "bind" type.
  if (mount.type === "bind" && !mount.options.some((o) => o === "bind" || o === "rbind")) mount.options = ["rbind", ...mount.options];
  return mount;
}

export function parseEnv(entries: string[]): string[] {
  for (const entry of entries) {
    if (!entry.includes("=") || entry.startsWith("=")) throw new CommandError(`invalid --env ${JSON.stringify(entry)}: expected NAME=value`);
  }
  return entries;
}

/** The container's OCI spec (JSON in an Any). */
export function parseJsonSpec(container: Container): object {
  try {
    return JSON.parse(Buffer.from(container.spec?.value ?? []).toString("utf8")) as object;
  } catch (err) {
    throw new CommandError(`container ${container.id}: its spec is not valid JSON: ${(err as Error).message}`);
  }
}
