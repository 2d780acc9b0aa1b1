// A kept process (berthd --keep-processes) is there to make the first pull fast, yet the
// first pull it serves runs the registry client's code for the first time: undici's
// connection and parser set-up, the auth and redirect handling, manifest parsing, all
// interpreted and unoptimized. A warm-up runs that code once at start against a registry
// of its own: a tiny image served on an ephemeral loopback port, for the length of the
// warm-up. Nothing leaves the host and nothing is stored.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mediaTypes } from "../image/media-types.ts";
import type { Descriptor } from "../image/manifest.ts";
import { RegistryClient } from "./client.ts";
import { parseRegistryReference, type RegistryReference } from "./reference.ts";

const repository = "berth/warm-up";

function blob(mediaType: string, data: Buffer): { desc: Descriptor; data: Buffer } {
  return { desc: { mediaType, digest: `sha256:${createHash("sha256").update(data).digest("hex")}`, size: data.length }, data };
}

/** One layer of 64 KiB, a config and a manifest: enough for every step of a pull to run. */
function warmUpImage() {
  const layer = blob(mediaTypes.ociLayer, Buffer.alloc(64 * 1024));
  const config = blob(mediaTypes.ociConfig, Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layer.desc.digest] } })));
  const manifest = blob(mediaTypes.ociManifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mediaTypes.ociManifest, config: config.desc, layers: [layer.desc] })));
  return { layer, config, manifest };
}

export interface WarmUpRegistry {
  client: RegistryClient;
  ref: RegistryReference;
  layer: Descriptor;
}

/**
 * Runs `use` against the loopback registry and closes it after; failures are the
 * caller's to ignore (a warm-up that cannot run costs the first pull its time, no more).
 */
export async function withWarmUpRegistry(use: (registry: WarmUpRegistry) => Promise<void>): Promise<void> {
  const image = warmUpImage();
  const served = (blob: { desc: Descriptor; data: Buffer }) => ({ type: blob.desc.mediaType, data: blob.data, digest: blob.desc.digest });
  const byPath = new Map<string, { type: string; data: Buffer; digest?: string }>([
    ["/v2/", { type: "application/json", data: Buffer.from("{}") }],
    [`/v2/${repository}/manifests/latest`, served(image.manifest)],
    [`/v2/${repository}/manifests/${image.manifest.desc.digest}`, served(image.manifest)],
    [`/v2/${repository}/blobs/${image.config.desc.digest}`, served(image.config)],
    [`/v2/${repository}/blobs/${image.layer.desc.digest}`, served(image.layer)],
  ]);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const found = byPath.get(req.url ?? "");
    if (!found || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"errors":[{"code":"NOT_FOUND"}]}');
      return;
    }
    res.writeHead(200, { "content-type": found.type, "content-length": found.data.length, ...(found.digest ? { "docker-content-digest": found.digest } : {}) });
    res.end(req.method === "HEAD" ? undefined : found.data);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new RegistryClient({ insecure: [host], credentials: async () => undefined, certsDir: "/nonexistent" });
  try {
    await use({ client, ref: parseRegistryReference(`${host}/${repository}:latest`), layer: image.layer.desc });
  } finally {
    await client.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
