// containerd.services.images.v1.Images over the ImageStore. Deleting an image asks
// the garbage collector to free what only it referenced (and waits for it with `sync`).
import type { CallContext } from "nice-grpc";
import { invalidArgument } from "../../core/errors.ts";
import { parseFilters } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";
import type { ImagesServiceImplementation } from "../../core/gen/containerd/services/images/v1/images.ts";
import { ImageCreate, ImageDelete, ImageUpdate } from "../../core/gen/containerd/services/images/v1/events.ts";
import { imageNotFound, type ImageStore } from "./store.ts";
import { applyUpdate, imageAdaptor, messageFromRecord, newImage, recordFromMessage } from "./records.ts";

const eventTypes = {
  create: "containerd.services.images.v1.ImageCreate",
  update: "containerd.services.images.v1.ImageUpdate",
  delete: "containerd.services.images.v1.ImageDelete",
};

/** Get and List: read-only, so berthd can answer them itself (services/gateway/store-reads.ts). */
export function imageReads(store: ImageStore): Pick<ImagesServiceImplementation, "get" | "list"> {
  return {
    async get(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const image = store.get(namespace, request.name);
      if (!image) throw imageNotFound(request.name);
      return { image: messageFromRecord(image) };
    },

    async list(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const matches = parseFilters(request.filters);
      const images = store.list(namespace).filter((image) => matches(imageAdaptor(image)));
      return { images: images.map(messageFromRecord) };
    },
  };
}

export function imagesService(store: ImageStore, metadata: MetadataClient): ImagesServiceImplementation {
  return {
    ...imageReads(store),

    async create(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const image = newImage(request.image, Date.now());
      const created = store.create(namespace, image);
      metadata.publish(namespace, "/images/create", eventTypes.create, ImageCreate, { name: created.name, labels: created.labels });
      return { image: messageFromRecord(created) };
    },

    async update(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const now = Date.now();
      const requested = recordFromMessage(request.image, now);
      if (requested.name === "") throw invalidArgument("image name is required for update");
      const paths = request.updateMask ?? [];
      const updated = store.update(namespace, requested.name, (current) => applyUpdate(current, requested, paths, now));
      // A new target may leave the old one unreferenced.
      metadata.scheduleCollection();
      metadata.publish(namespace, "/images/update", eventTypes.update, ImageUpdate, { name: updated.name, labels: updated.labels });
      return { image: messageFromRecord(updated) };
    },

    async delete(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      store.delete(namespace, request.name);
      metadata.publish(namespace, "/images/delete", eventTypes.delete, ImageDelete, { name: request.name });
      if (request.sync) await metadata.collectNow();
      else metadata.scheduleCollection();
      return {};
    },
  };
}
