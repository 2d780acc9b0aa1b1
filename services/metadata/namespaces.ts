// containerd.services.namespaces.v1.Namespaces. A namespace is a name with labels;
// it may be deleted only when it holds no images, containers, blobs or snapshots (its
// leases go with it), checked and done in one transaction over the shared database.
import type { CallContext } from "nice-grpc";
import type {
  CreateNamespaceRequest,
  DeleteNamespaceRequest,
  GetNamespaceRequest,
  ListNamespacesRequest,
  NamespacesServiceImplementation,
  UpdateNamespaceRequest,
} from "../../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { NamespaceCreate, NamespaceDelete, NamespaceUpdate } from "../../core/gen/containerd/events/namespace.ts";
import { alreadyExists, failedPrecondition, notFound } from "../../core/errors.ts";
import { fieldsAndLabels, parseFilters } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { labelsAfterUpdate, validateLabels } from "../../core/labels.ts";
import type { PublishEvent } from "./events.ts";
import type { NamespaceStore } from "./store.ts";

export interface NamespacesDeps {
  namespaces: NamespaceStore;
  publish: PublishEvent;
}

// containerd publishes create/update in the caller's namespace. Callers that send
// none (services creating a namespace implicitly) get the new namespace's own.
function eventNamespace(ctx: CallContext, fallback: string): string {
  try {
    return namespaceOf(ctx);
  } catch {
    return fallback;
  }
}

export function namespacesService(deps: NamespacesDeps): NamespacesServiceImplementation {
  const { namespaces, publish } = deps;

  return {
    async get(request: GetNamespaceRequest) {
      const namespace = namespaces.get(request.name);
      if (!namespace) throw notFound(`namespace "${request.name}"`);
      return { namespace };
    },

    async list(request: ListNamespacesRequest) {
      const matches = parseFilters([request.filter]);
      return { namespaces: namespaces.list().filter((ns) => matches(fieldsAndLabels({ name: ns.name }, ns.labels))) };
    },

    async create(request: CreateNamespaceRequest, ctx: CallContext) {
      const name = validateIdentifier(request.namespace?.name ?? "", "namespace");
      const labels = validateLabels(request.namespace?.labels ?? {});
      if (!namespaces.create({ name, labels })) throw alreadyExists(`namespace "${name}"`);
      publish(eventNamespace(ctx, name), "/namespaces/create", "containerd.events.NamespaceCreate", NamespaceCreate, { name, labels });
      return { namespace: { name, labels } };
    },

    async update(request: UpdateNamespaceRequest, ctx: CallContext) {
      const name = validateIdentifier(request.namespace?.name ?? "", "namespace");
      const update = validateLabels(request.namespace?.labels ?? {});
      const paths = request.updateMask ?? [];
      const updated = namespaces.updateLabels(name, (current) => labelsAfterUpdate(`namespace "${name}"`, current, update, paths));
      if (!updated) throw notFound(`namespace "${name}"`);
      publish(eventNamespace(ctx, name), "/namespaces/update", "containerd.events.NamespaceUpdate", NamespaceUpdate, updated);
      return { namespace: updated };
    },

    async delete(request: DeleteNamespaceRequest) {
      const name = validateIdentifier(request.name, "namespace");
      const result = namespaces.delete(name);
      if (result === "not found") throw notFound(`namespace "${name}"`);
      if (result !== "deleted") throw failedPrecondition(`namespace "${name}" must be empty, but it still has ${result.join(", ")}`);
      // The envelope carries the deleted namespace itself, as containerd's does.
      publish(name, "/namespaces/delete", "containerd.events.NamespaceDelete", NamespaceDelete, { name });
      return {};
    },
  };
}
