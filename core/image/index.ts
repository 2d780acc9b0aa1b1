// Image handling on top of the containerd services: media types, manifests,
// platforms, chain ids, unpack, archive import/export and image mounts.
export * from "./media-types.ts";
export * from "./manifest.ts";
export * from "./platform.ts";
export * from "./chain-id.ts";
export * from "./reference.ts";
export * from "./services.ts";
export * from "./connect.ts";
export * from "./lease.ts";
export * from "./resolve.ts";
export * from "./unpack.ts";
export * from "./archive-reader.ts";
export * from "./import.ts";
export * from "./export.ts";
export * from "./mount.ts";
