// containerd.services.images.v1.Images over the ImageStore, plus the internal
// NamespaceUsage check the metadata service asks before deleting a namespace.
import type { CallContext } from "nice-grpc";
import { invalidArgument } from "../../core/errors.ts";
import { parseFilters } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";
import type { ImagesServiceImplementation } from "../../core/gen/containerd/services/images/v1/images.ts";
import { ImageCreate, ImageDelete, ImageUpdate } from "../../core/gen/containerd/services/images/v1/events.ts";
import type { NamespaceUsageServiceImplementation } from "../../core/gen/berth/internal/v1/namespace_usage.ts";
import { imageNotFound, type ImageStore } from "./store.ts";
import { applyUpdate, imageAdaptor, messageFromRecord, newImage, recordFromMessage } from "./records.ts";

const eventTypes = {
  create: "containerd.services.images.v1.ImageCreate",
  update: "containerd.services.images.v1.ImageUpdate",
  delete: "containerd.services.images.v1.ImageDelete",
};

export function imagesService(store: ImageStore, metadata: MetadataClient): ImagesServiceImplementation {
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

    async create(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const image = newImage(request.image, Date.now());
      await metadata.ensureNamespace(namespace);
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
      // Validate fully before touching anything, so a namespace is only created for a
      // change that will be written; the mask is applied again inside the transaction.
      const existing = store.get(namespace, requested.name);
      if (!existing) throw imageNotFound(requested.name);
      applyUpdate(existing, requested, paths, now);
      await metadata.ensureNamespace(namespace);
      const updated = store.update(namespace, requested.name, (current) => applyUpdate(current, requested, paths, now));
      metadata.publish(namespace, "/images/update", eventTypes.update, ImageUpdate, { name: updated.name, labels: updated.labels });
      return { image: messageFromRecord(updated) };
    },

    async delete(request, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      // `sync` asks to wait for garbage collection; images hold no space of their
      // own, and content GC runs in its own service, so there is nothing to wait for here.
      store.delete(namespace, request.name);
      metadata.publish(namespace, "/images/delete", eventTypes.delete, ImageDelete, { name: request.name });
      return {};
    },
  };
}

export function namespaceUsageService(store: ImageStore, metadata: MetadataClient): NamespaceUsageServiceImplementation {
  return {
    async check(request) {
      const count = store.count(request.namespace);
      // An empty answer precedes the namespace's deletion: the next write there must
      // create it again rather than trust our cache.
      if (count === 0) metadata.forgetNamespace(request.namespace);
      return { empty: count === 0, detail: count === 0 ? "" : `${count} image${count === 1 ? "" : "s"}` };
    },
  };
}
