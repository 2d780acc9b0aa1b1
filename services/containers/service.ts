// containerd.services.containers.v1.Containers, with containerd's rules for what a
// valid record is and what an update may change (its metadata/containers.go is the
// reference for behaviour). A deleted container may leave its image's content and its
// snapshot unreferenced: the garbage collector is asked to look.
import type { CallContext } from "nice-grpc";
import { ContainerCreate, ContainerDelete, ContainerUpdate } from "../../core/gen/containerd/events/container.ts";
import type { Container, ContainersServiceImplementation } from "../../core/gen/containerd/services/containers/v1/containers.ts";
import { invalidArgument } from "../../core/errors.ts";
import { fieldsAndLabels, parseFilters, type FieldAdaptor } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { applyLabelMask, validateLabels } from "../../core/labels.ts";
import type { PublishEvent } from "../metadata/events.ts";
import type { ContainerStore } from "./store.ts";

/** What a record must hold: a valid id, a runtime name, a spec, sane labels and extension names. */
function validated(container: Container | undefined): Container {
  if (!container) throw invalidArgument("container must be set");
  validateIdentifier(container.id, "container id");
  validateLabels(container.labels);
  if (!container.runtime?.name) throw invalidArgument(`container "${container.id}": must specify a runtime name`);
  if (!container.spec) throw invalidArgument(`container "${container.id}": container.Spec must be set`);
  if (container.snapshotKey !== "" && container.snapshotter === "") {
    throw invalidArgument(`container "${container.id}": snapshotter must be set with a snapshot key`);
  }
  for (const name of Object.keys(container.extensions)) {
    if (name === "") throw invalidArgument(`container "${container.id}": extension names must not be empty`);
  }
  return container;
}

/** The record after an update with these mask paths (no paths: every mutable field). */
function updated(current: Container, update: Container, paths: readonly string[]): Container {
  if (update.runtime?.name && update.runtime.name !== current.runtime?.name) {
    throw invalidArgument(`container "${current.id}": container.Runtime.Name field is immutable`);
  }
  if (update.snapshotter !== "" && update.snapshotter !== current.snapshotter) {
    throw invalidArgument(`container "${current.id}": container.Snapshotter field is immutable`);
  }
  if (paths.length === 0) {
    return validated({ ...current, labels: update.labels, spec: update.spec, extensions: update.extensions, image: update.image, snapshotKey: update.snapshotKey });
  }
  let next = { ...current, labels: { ...current.labels }, extensions: { ...current.extensions } };
  const labelPaths: string[] = [];
  for (const path of paths) {
    if (path === "labels" || path.startsWith("labels.")) labelPaths.push(path);
    else if (path === "spec") next.spec = update.spec;
    else if (path === "image") next.image = update.image;
    else if (path === "snapshotkey") next.snapshotKey = update.snapshotKey;
    else if (path === "extensions") next.extensions = { ...update.extensions };
    else if (path.startsWith("extensions.")) {
      const name = path.slice("extensions.".length);
      const value = update.extensions[name];
      if (value === undefined) delete next.extensions[name];
      else next.extensions[name] = value;
    } else throw invalidArgument(`cannot update ${JSON.stringify(path)} field on container "${current.id}"`);
  }
  if (labelPaths.length > 0) next = { ...next, labels: applyLabelMask(current.labels, update.labels, labelPaths) };
  return validated(next);
}

/** The fields List filters may name: id, image, runtime.name, snapshotter, labels.<key>. */
function containerAdaptor(c: Container): FieldAdaptor {
  const fields = fieldsAndLabels({ id: c.id, image: c.image, snapshotter: c.snapshotter }, c.labels);
  return (path) => (path[0] === "runtime" && path[1] === "name" && path.length === 2 ? c.runtime?.name : fields(path));
}

export interface ContainersDeps {
  store: ContainerStore;
  publish: PublishEvent;
  /** Asks for a garbage collection soon (after a delete that may have left garbage). */
  collect(): void;
}

export function containersService({ store, publish, collect }: ContainersDeps): ContainersServiceImplementation {
  const list = (filters: string[], ctx: CallContext) => {
    const matches = parseFilters(filters);
    return store.list(namespaceOf(ctx)).filter((c) => matches(containerAdaptor(c)));
  };
  return {
    async get(request, ctx) {
      return { container: store.get(namespaceOf(ctx), request.id) };
    },

    async list(request, ctx) {
      return { containers: list(request.filters, ctx) };
    },

    async *listStream(request, ctx) {
      for (const container of list(request.filters, ctx)) yield { container };
    },

    async create(request, ctx) {
      const namespace = namespaceOf(ctx);
      const container = store.create(namespace, validated(request.container), Date.now());
      publish(namespace, "/containers/create", "containerd.events.ContainerCreate", ContainerCreate, {
        id: container.id,
        image: container.image,
        runtime: container.runtime,
      });
      return { container };
    },

    async update(request, ctx) {
      const namespace = namespaceOf(ctx);
      if (!request.container) throw invalidArgument("container must be set");
      const update = request.container;
      const container = store.update(namespace, update.id, (current) => updated(current, update, request.updateMask ?? []), Date.now());
      publish(namespace, "/containers/update", "containerd.events.ContainerUpdate", ContainerUpdate, {
        id: container.id,
        image: container.image,
        labels: container.labels,
        snapshotKey: container.snapshotKey,
      });
      return { container };
    },

    async delete(request, ctx) {
      const namespace = namespaceOf(ctx);
      const container = store.get(namespace, request.id);
      store.delete(namespace, request.id);
      publish(namespace, "/containers/delete", "containerd.events.ContainerDelete", ContainerDelete, { id: request.id });
      if (store.mayLeaveGarbage(namespace, container)) collect();
      return {};
    },
  };
}
