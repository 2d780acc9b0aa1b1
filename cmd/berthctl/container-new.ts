// A new container from an image, as `ctr run` and `ctr containers create` make one: the
// image unpacked for the snapshotter, a writable snapshot named after the container on
// top of it, and a container record whose OCI spec comes from core/oci (the image's
// config under the command line's flags). A lease holds the snapshot until the record
// refers to it; whatever fails, nothing is left half-made. Loaded only by the commands
// that create containers: the image library brings grpc-js with it.
import { mkdtempSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readBlobBytes } from "../../core/content-client.ts";
import { ContainersDefinition, type Container } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import type { Mount } from "../../core/gen/containerd/types/mount.ts";
import { isNotFound } from "../../core/grpc-status.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { callOptions, withDocumentCache } from "../../core/image/services.ts";
import { createLease, deleteLease } from "../../core/image/lease.ts";
import { resolveSnapshotter, unpackImage } from "../../core/image/unpack.ts";
import { documentLimits } from "../../core/image/resolve.ts";
import { mountAll, unmountAll } from "../../core/mounts.ts";
import { containerSpec, processFromImage, type ImageRunConfig } from "../../core/oci/spec.ts";
import { resolveUser } from "../../core/oci/user.ts";
import { prepareRootfs } from "../../core/rootfs.ts";
import { CommandError, messageOf } from "./output.ts";
import { labelArgs, type Session } from "./session.ts";
import { defaultRuntime, parseEnv, parseMountFlag, specTypeUrl, stopSignalLabel, type ContainerFlags } from "./container-flags.ts";

interface ImageConfigFile {
  config?: ImageRunConfig & { StopSignal?: string };
}

/** The uid/gid of `user`, looked up in the container's rootfs (mounted for the lookup only) when it names anyone. */
async function userOf(user: string, mounts: readonly Mount[]) {
  if (!user) return { uid: 0, gid: 0 };
  const target = mkdtempSync(join(tmpdir(), "berthctl-user-"));
  try {
    await mountAll(mounts, target);
    try {
      return resolveUser(user, target);
    } finally {
      await unmountAll(target, { detachBusy: true });
    }
  } finally {
    rmdirSync(target);
  }
}

export interface NewContainer {
  container: Container;
  /** The rootfs snapshot's mounts, for the task. */
  rootfs: Mount[];
}

/** Creates container `id` from `imageName`; `args` replaces the image's entrypoint and cmd when given. */
export async function createContainer(s: Session, imageName: string, id: string, args: string[], flags: ContainerFlags): Promise<NewContainer> {
  try {
    validateIdentifier(id, "container id");
  } catch (err) {
    throw new CommandError(messageOf(err));
  }
  const env = parseEnv(flags.env);
  const mounts = flags.mount.map(parseMountFlag);
  const svc = withDocumentCache(s.imageServices());
  const { image } = await svc.images.get({ name: imageName }, s.call()).catch((err: unknown) => {
    throw isNotFound(err) ? new CommandError(`image ${JSON.stringify(imageName)}: not found`) : err;
  });
  const target = image!.target!;
  const lease = await createLease(svc, { expireMs: 3600_000 });
  const undo: (() => Promise<unknown>)[] = [];
  try {
    const snapshotter = await resolveSnapshotter(svc, flags.snapshotter, lease);
    const unpacked = await unpackImage(svc, { mediaType: target.mediaType, digest: target.digest, size: Number(target.size) }, { snapshotter, lease });
    const configBytes = await readBlobBytes(svc.content, unpacked.config.digest, callOptions(svc, lease), { limit: documentLimits.config });
    const imageConfig = (JSON.parse(configBytes.toString("utf8")) as ImageConfigFile).config ?? {};
    const process = processFromImage(imageConfig, {
      ...(args.length > 0 ? { entrypoint: args } : {}),
      env,
      ...(flags.cwd ? { workingDir: flags.cwd } : {}),
      ...(flags.user !== undefined ? { user: flags.user } : {}),
    });
    if (process.args.length === 0) throw new CommandError(`no command specified: image ${imageName} has no entrypoint or cmd, and none was given`);
    const rootfs = await prepareRootfs(svc.snapshots, { namespace: s.namespace, snapshotter, key: id, parent: unpacked.chainId, lease, ...(s.signal ? { signal: s.signal } : {}) });
    undo.push(() => svc.snapshots.remove({ snapshotter, key: id }, s.call()));
    const spec = containerSpec({
      namespace: s.namespace,
      id,
      args: process.args,
      env: process.env,
      cwd: process.cwd,
      user: await userOf(process.user, rootfs),
      terminal: Boolean(flags.tty),
      network: flags.netHost ? { kind: "host" } : { kind: "private" },
      mounts,
      privileged: Boolean(flags.privileged),
      readonlyRootfs: Boolean(flags.readOnly),
    });
    const labels = { [stopSignalLabel]: imageConfig.StopSignal || "SIGTERM", ...labelArgs(flags.label) };
    const { container } = await s.client(ContainersDefinition).create(
      {
        container: {
          id,
          image: imageName,
          labels,
          runtime: { name: defaultRuntime },
          spec: { typeUrl: specTypeUrl, value: Buffer.from(JSON.stringify(spec)) },
          snapshotter,
          snapshotKey: id,
        },
      },
      s.call(lease),
    );
    return { container: container!, rootfs };
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => undefined);
    throw err;
  } finally {
    await deleteLease(svc, lease).catch(() => undefined);
  }
}
