// A kept jobs process's warm-up (berthd --keep-processes): a pull's own first steps, run
// once at start so the first real pull does not run them cold: the manifest's resolve
// from a loopback registry (core/registry/warm-up.ts), and a read from each service a
// pull calls next (reads only: a digest and an image no namespace has).
import { blobInfo } from "../../../core/content-client.ts";
import { callOptions } from "../../../core/image/services.ts";
import { resolve } from "../../../core/registry/resolve.ts";
import { withWarmUpRegistry } from "../../../core/registry/warm-up.ts";
import type { ServicesFor } from "./services.ts";

export async function warmUpPull(services: ServicesFor): Promise<void> {
  await withWarmUpRegistry(async ({ client, ref, layer }) => {
    const image = await resolve(client, ref);
    const svc = services("default");
    await Promise.all([
      blobInfo(svc.content, layer.digest, callOptions(svc)),
      svc.images.get({ name: image.name }, callOptions(svc)).catch(() => undefined),
    ]);
  });
}
