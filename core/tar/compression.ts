// Layer media types and their compression, following containerd's DiffCompression:
// the media type says whether a layer may be applied at all, and the magic bytes
// decide how it is decompressed when the type leaves it open.
import { createGunzip, createGzip, createZstdCompress, createZstdDecompress, constants as zlib } from "node:zlib";
import type { Transform } from "node:stream";
import { invalidArgument, notImplemented } from "../errors.ts";

export type Compression = "none" | "gzip" | "zstd";

export const layerMediaTypes = {
  ociTar: "application/vnd.oci.image.layer.v1.tar",
  ociGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  dockerTar: "application/vnd.docker.image.rootfs.diff.tar",
  dockerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
} as const;

/**
 * What a layer media type says about compression. "detect" = the type does not pin it
 * (plain tar types, docker's uncompressed type that is often gzip in practice).
 * Throws not-implemented for anything that is not a layer type we can unpack.
 */
export function layerCompression(mediaType: string): Compression | "detect" {
  const [base, ...ext] = mediaType.split("+");
  switch (base) {
    case "":
      return "detect";
    case "application/vnd.docker.image.rootfs.diff.tar":
    case "application/vnd.docker.image.rootfs.foreign.diff.tar":
      if (ext.length === 0) return "detect";
      break;
    case "application/vnd.docker.image.rootfs.diff.tar.gzip":
    case "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
      if (ext.length === 0) return "gzip";
      break;
    case "application/vnd.oci.image.layer.v1.tar":
    case "application/vnd.oci.image.layer.nondistributable.v1.tar":
      if (ext.length === 0) return "detect";
      if (ext.length === 1 && ext[0] === "gzip") return "gzip";
      if (ext.length === 1 && ext[0] === "zstd") return "zstd";
      break;
  }
  throw notImplemented(`unsupported diff media type "${mediaType}"`);
}

/** The OCI layer media type for a compression (what Diff produces). */
export function mediaTypeFor(compression: Compression): string {
  return compression === "gzip" ? layerMediaTypes.ociGzip : compression === "zstd" ? layerMediaTypes.ociZstd : layerMediaTypes.ociTar;
}

/** Compression of the layer Diff should write for a requested media type ("" = gzip, as containerd). */
export function diffOutputCompression(mediaType: string): Compression {
  switch (mediaType) {
    case "":
    case layerMediaTypes.ociGzip:
      return "gzip";
    case layerMediaTypes.ociTar:
      return "none";
    case layerMediaTypes.ociZstd:
      return "zstd";
  }
  throw notImplemented(`unsupported diff media type "${mediaType}"`);
}

/** Compression recognised from the first bytes of a blob (at least 4 are needed). */
export function sniffCompression(head: Uint8Array): Compression | "xz" | "bzip2" {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head.length >= 6 && head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a && head[5] === 0) return "xz";
  if (head.length >= 3 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  return "none";
}

/**
 * Settles how to decompress: the sniffed format must agree with a media type that
 * names one; a type that leaves it open takes what the bytes say.
 */
export function resolveCompression(declared: Compression | "detect", head: Uint8Array, what: string): Compression {
  const sniffed = sniffCompression(head);
  if (sniffed === "xz" || sniffed === "bzip2") throw notImplemented(`${what}: ${sniffed}-compressed layers are not supported`);
  if (declared === "detect" || declared === sniffed) return sniffed;
  // A caller that states "none" knows the bytes are a plain tar.
  if (declared === "none") return "none";
  throw invalidArgument(`${what}: media type says ${declared} but the data is ${sniffed === "none" ? "not compressed (or corrupt)" : sniffed}`);
}

/** Output chunks of 128 KiB rather than zlib's 16 KiB default: fewer, larger file writes downstream. */
const chunkSize = 128 * 1024;

export function decompressor(compression: Exclude<Compression, "none">): Transform {
  return compression === "gzip" ? createGunzip({ chunkSize }) : createZstdDecompress({ chunkSize });
}

export function compressor(compression: Exclude<Compression, "none">): Transform {
  return compression === "gzip"
    ? createGzip({ level: zlib.Z_DEFAULT_COMPRESSION })
    : createZstdCompress({ params: { [zlib.ZSTD_c_compressionLevel]: 3 } });
}
