// OCI and Docker schema2 media types, and the predicates containerd's images
// package uses to tell manifests, indexes, configs and layers apart.

export const mediaTypes = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerZstd: "application/vnd.docker.image.rootfs.diff.tar.zstd",
  dockerForeignLayer: "application/vnd.docker.image.rootfs.foreign.diff.tar",
  dockerForeignLayerGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

/** Image layout (archive) annotations. */
export const annotations = {
  imageName: "io.containerd.image.name",
  refName: "org.opencontainers.image.ref.name",
} as const;

export const labels = {
  uncompressed: "containerd.io/uncompressed",
  gcExpire: "containerd.io/gc.expire",
  gcRefSnapshotPrefix: "containerd.io/gc.ref.snapshot.",
  defaultSnapshotter: "containerd.io/defaults/snapshotter",
} as const;

export function isManifestType(mediaType: string): boolean {
  return mediaType === mediaTypes.ociManifest || mediaType === mediaTypes.dockerManifest;
}

export function isIndexType(mediaType: string): boolean {
  return mediaType === mediaTypes.ociIndex || mediaType === mediaTypes.dockerManifestList;
}

export function isConfigType(mediaType: string): boolean {
  return mediaType === mediaTypes.ociConfig || mediaType === mediaTypes.dockerConfig;
}

const dockerLayerTypes = new Set<string>([
  mediaTypes.dockerLayer,
  mediaTypes.dockerLayerGzip,
  mediaTypes.dockerLayerZstd,
  mediaTypes.dockerForeignLayer,
  mediaTypes.dockerForeignLayerGzip,
]);

/** images.IsLayerType: any OCI layer type, or a Docker rootfs diff (ignoring +suffixes). */
export function isLayerType(mediaType: string): boolean {
  if (mediaType.startsWith("application/vnd.oci.image.layer.")) return true;
  return dockerLayerTypes.has(mediaType.split("+")[0]!);
}

/** images.ChildGCLabels: the label key (prefix) a parent uses to reference a child. */
export function childGcLabel(mediaType: string): string {
  if (isConfigType(mediaType)) return "containerd.io/gc.ref.content.config";
  if (isManifestType(mediaType)) return "containerd.io/gc.ref.content.m.";
  if (isLayerType(mediaType)) return "containerd.io/gc.ref.content.l.";
  return "containerd.io/gc.ref.content.";
}

export type Compression = "gzip" | "zstd" | "none";

/** Compression from a blob's first bytes (magic numbers), as compression.DetectCompression does. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return "gzip";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  return "none";
}
