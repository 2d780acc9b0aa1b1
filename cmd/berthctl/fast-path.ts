// Commands answered without loading the CLI proper (commander, grpc-js, node:http2):
// `version`, which scripts and health checks run most, over the direct gRPC client.
// Any other command line, and any failure here, goes to the full CLI instead, which
// then does the whole job and reports errors its usual way; so this path only ever
// prints complete, successful output.
import { DirectChannel, directClient } from "../../core/grpc-direct.ts";
import { IntrospectionDefinition } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../../core/gen/containerd/services/version/v1/version.ts";
import { namespaceHeader } from "../../core/headers.ts";
import { clientSection, mismatchWarnings, serverSection, uuidLine } from "./version-text.ts";

interface FastCommand {
  address: string;
  namespace: string;
  command: string;
}

/** The defaults the full CLI uses too, so the two paths cannot drift apart. */
export const defaultAddress = "/run/berth/berth.sock";
export const defaultNamespace = "default";

/**
 * The command line, if it is one the fast path serves: global -a/--address and
 * -n/--namespace (as `-a x`, `--address x` or `--address=x`), then `version` alone.
 */
function parseFastCommand(args: readonly string[], env: NodeJS.ProcessEnv): FastCommand | undefined {
  let address = env.BERTH_ADDRESS || defaultAddress;
  let namespace = env.BERTH_NAMESPACE || defaultNamespace;
  let i = 0;
  for (; i < args.length && args[i]!.startsWith("-"); i++) {
    const arg = args[i]!;
    const eq = arg.indexOf("=");
    const [flag, inline] = eq > 0 && arg.startsWith("--") ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = inline ?? args[++i];
    if (value === undefined || value === "") return undefined;
    if (flag === "-a" || flag === "--address") address = value;
    else if (flag === "-n" || flag === "--namespace") namespace = value;
    else return undefined;
  }
  if (args.length - i !== 1 || args[i] !== "version") return undefined;
  return { address, namespace, command: "version" };
}

/** Runs the command if the fast path serves it; false means "use the full CLI". */
export async function runFastPath(args: readonly string[], env: NodeJS.ProcessEnv): Promise<boolean> {
  const command = parseFastCommand(args, env);
  if (!command) return false;
  const channel = new DirectChannel(command.address);
  try {
    const options = { metadata: { [namespaceHeader]: command.namespace } };
    // Both asked at once: one round trip instead of two.
    const [version, server] = await Promise.all([
      directClient(VersionDefinition, channel).version({}, options),
      directClient(IntrospectionDefinition, channel).server({}, options),
    ]);
    process.stdout.write(clientSection() + serverSection(version) + uuidLine(server.uuid));
    const warnings = mismatchWarnings(version);
    if (warnings) process.stderr.write(warnings);
    return true;
  } catch {
    return false;
  } finally {
    channel.close();
  }
}
