// A quick way to try the registry client by hand against a running berthd (the
// daemon's pull/push jobs and CLI commands are built on the same library):
//   node scripts/registry.ts pull <ref> [--namespace ns] [--platform os/arch]
//   node scripts/registry.ts push <local image> <ref>
//   node scripts/registry.ts login <registry> --username u --password-stdin
//   node scripts/registry.ts logout <registry>
// Common flags: --address <berthd socket> --insecure <host> (repeatable) --certs-dir <dir>
// --mirror <registry>=<url> (repeatable) --default-registry <host>
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connectImageServices } from "../core/image/connect.ts";
import { closeChannels } from "../core/grpc-client.ts";
import { RegistryClient, login, logout, pullImage, pushImage, type RegistryClientOptions } from "../core/registry/index.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    address: { type: "string", default: "/run/berth/berth.sock" },
    namespace: { type: "string", default: "default" },
    platform: { type: "string" },
    insecure: { type: "string", multiple: true, default: [] },
    "certs-dir": { type: "string" },
    mirror: { type: "string", multiple: true, default: [] },
    "default-registry": { type: "string" },
    username: { type: "string" },
    "password-stdin": { type: "boolean", default: false },
  },
});

const mirrors: Record<string, string[]> = {};
for (const m of values.mirror) {
  const [name, url] = m.split("=", 2);
  if (!name || !url) throw new Error(`--mirror ${m}: expected <registry>=<url>`);
  (mirrors[name] ??= []).push(url);
}
const options: RegistryClientOptions = {
  insecure: values.insecure,
  mirrors,
  ...(values["certs-dir"] ? { certsDir: values["certs-dir"] } : {}),
  ...(values["default-registry"] ? { defaultRegistry: values["default-registry"] } : {}),
};
const [command, ...args] = positionals;
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(2)} s`;

try {
  if (command === "pull" && args.length === 1) {
    const client = new RegistryClient(options);
    const svc = connectImageServices(values.address, values.namespace);
    const result = await pullImage(client, svc, args[0]!, {
      ...(values.platform ? { platform: values.platform } : {}),
      onProgress: (e) => e.type === "blob" && console.log(`${e.existed ? "exists " : "fetched"} ${e.descriptor.digest} ${e.descriptor.size} B`),
    });
    console.log(`${result.image.name}: ${result.image.root.digest} (${elapsed()})`);
    await client.close();
  } else if (command === "push" && args.length === 2) {
    const client = new RegistryClient(options);
    const svc = connectImageServices(values.address, values.namespace);
    const result = await pushImage(client, svc, args[0]!, args[1]!, {
      ...(values.platform ? { platform: values.platform } : {}),
      onProgress: (e) => e.type !== "progress" && console.log(`${e.type.padEnd(8)} ${e.descriptor.digest}${e.type === "mounted" ? ` from ${e.from}` : ""}`),
    });
    console.log(`${result.name}: ${result.root.digest} (${elapsed()})`);
    await client.close();
  } else if (command === "login" && args.length === 1 && values.username && values["password-stdin"]) {
    const password = readFileSync(0, "utf8").replace(/\r?\n$/, "");
    await login(args[0]!, { username: values.username, password }, options);
    console.log("Login Succeeded");
  } else if (command === "logout" && args.length === 1) {
    console.log((await logout(args[0]!)) ? `Removed login credentials for ${args[0]}` : `Not logged in to ${args[0]}`);
  } else {
    console.error("usage: node scripts/registry.ts pull <ref> | push <image> <ref> | login <registry> --username u --password-stdin | logout <registry>");
    process.exitCode = 2;
  }
} catch (err) {
  console.error(`error: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  closeChannels();
}
