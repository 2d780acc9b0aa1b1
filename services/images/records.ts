// The rules an image record obeys (containerd's metadata/images.go): what a valid
// image is, how an update mask changes one, and how filters see one.
import { invalidArgument, BerthError } from "../../core/errors.ts";
import { parseDigest } from "../../core/digest.ts";
import { validateLabels, applyLabelMask } from "../../core/labels.ts";
import type { FieldAdaptor } from "../../core/filters.ts";
import type { Image } from "../../core/gen/containerd/services/images/v1/images.ts";
import { timestampFromMillis } from "../../core/timestamp.ts";
import type { ImageRecord, ImageTarget } from "./store.ts";

/** The client's image as a record (timestamps are the server's to set). */
export function recordFromMessage(image: Image | undefined, now: number): ImageRecord {
  const target = image?.target;
  return {
    name: image?.name ?? "",
    labels: { ...image?.labels },
    target: {
      mediaType: target?.mediaType ?? "",
      digest: target?.digest ?? "",
      size: target?.size ?? 0n,
      annotations: { ...target?.annotations },
    },
    createdAt: now,
    updatedAt: now,
  };
}

export function messageFromRecord(record: ImageRecord): Image {
  return {
    name: record.name,
    labels: record.labels,
    target: { ...record.target },
    createdAt: timestampFromMillis(record.createdAt),
    updatedAt: timestampFromMillis(record.updatedAt),
  };
}

/** A validated record for Create; like containerd, labels with empty values are not stored. */
export function newImage(image: Image | undefined, now: number): ImageRecord {
  const requested = recordFromMessage(image, now);
  return validateImage({ ...requested, labels: applyLabelMask({}, requested.labels, ["labels"]) });
}

/** Throws INVALID_ARGUMENT naming the first thing wrong with the image. */
function validateImage(image: ImageRecord): ImageRecord {
  if (image.name === "") throw invalidArgument("image name must not be empty");
  const what = `image ${JSON.stringify(image.name)}`;
  try {
    validateLabels(image.labels);
  } catch (err) {
    if (err instanceof BerthError) throw invalidArgument(`${what}: labels: ${err.message}`);
    throw err;
  }
  validateTarget(what, image.target);
  return image;
}

function validateTarget(what: string, target: ImageTarget): void {
  try {
    parseDigest(target.digest);
  } catch (err) {
    if (err instanceof BerthError) throw invalidArgument(`${what}: target: ${err.message}`);
    throw err;
  }
  if (target.size <= 0n) throw invalidArgument(`${what}: target size must be greater than zero (got ${target.size})`);
  if (target.mediaType === "") throw invalidArgument(`${what}: target media type must be set`);
}

/**
 * The record an Update writes: with no mask the request replaces every mutable field;
 * otherwise only the named paths change. Like containerd, `annotations` and
 * `annotations.<key>` (the target's) are accepted besides `target`, `labels` and
 * `labels.<key>`.
 */
export function applyUpdate(current: ImageRecord, requested: ImageRecord, paths: readonly string[], now: number): ImageRecord {
  let next: ImageRecord;
  if (paths.length === 0) {
    next = { ...requested, labels: applyLabelMask(current.labels, requested.labels, ["labels"]) };
  } else {
    next = { ...current, target: { ...current.target } };
    const labelPaths: string[] = [];
    for (const path of paths) {
      if (path === "labels" || path.startsWith("labels.")) {
        labelPaths.push(path);
      } else if (path === "target") {
        next.target = { ...requested.target };
      } else if (path === "annotations") {
        next.target.annotations = { ...requested.target.annotations };
      } else if (path.startsWith("annotations.")) {
        const key = path.slice("annotations.".length);
        const value = requested.target.annotations[key];
        const annotations = { ...next.target.annotations };
        if (value === undefined) delete annotations[key];
        else annotations[key] = value;
        next.target.annotations = annotations;
      } else {
        throw invalidArgument(`cannot update ${JSON.stringify(path)} field on image ${JSON.stringify(current.name)}`);
      }
    }
    if (labelPaths.length > 0) next.labels = applyLabelMask(current.labels, requested.labels, labelPaths);
  }
  return { ...validateImage({ ...next, name: current.name }), createdAt: current.createdAt, updatedAt: now };
}

/** Filter fields: name, target.digest, target.mediatype, labels.<key>, annotations.<key>. */
export function imageAdaptor(image: ImageRecord): FieldAdaptor {
  const nonEmpty = (value: string) => (value === "" ? undefined : value);
  return (path) => {
    switch (path[0]) {
      case "name":
        return path.length === 1 ? nonEmpty(image.name) : undefined;
      case "target":
        if (path.length !== 2) return undefined;
        if (path[1] === "digest") return nonEmpty(image.target.digest);
        if (path[1] === "mediatype") return nonEmpty(image.target.mediaType);
        return undefined;
      case "labels":
        return path.length < 2 ? undefined : image.labels[path.slice(1).join(".")];
      case "annotations":
        return path.length < 2 ? undefined : image.target.annotations[path.slice(1).join(".")];
      default:
        return undefined;
    }
  };
}
