// containerd.services.namespaces.v1.Namespaces. A namespace is a name with labels;
// it may be deleted only when no process still holds objects in it and it has no
// leases.
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
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../../core/errors.ts";
import { fieldsAndLabels, parseFilters } from "../../core/filters.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateIdentifier } from "../../core/identifiers.ts";
import { applyLabelMask, validateLabels } from "../../core/labels.ts";
import type { PublishEvent } from "./events.ts";
import type { NamespaceUsage } from "./namespace-usage.ts";
import type { LeaseStore, NamespaceStore } from "./store.ts";

export interface NamespacesDeps {
  namespaces: NamespaceStore;
  leases: LeaseStore;
  usage: NamespaceUsage;
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

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

export function namespacesService(deps: NamespacesDeps): NamespacesServiceImplementation {
  const { namespaces, leases, usage, publish } = deps;

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
      for (const path of paths) {
        if (path !== "labels" && !(path.startsWith("labels.") && path.length > "labels.".length)) {
          throw invalidArgument(`cannot update "${path}" field on namespace "${name}"`);
        }
      }
      const updated = namespaces.updateLabels(name, (current) => validateLabels(applyLabelMask(current, update, paths)));
      if (!updated) throw notFound(`namespace "${name}"`);
      publish(eventNamespace(ctx, name), "/namespaces/update", "containerd.events.NamespaceUpdate", NamespaceUpdate, updated);
      return { namespace: updated };
    },

    async delete(request: DeleteNamespaceRequest) {
      const name = validateIdentifier(request.name, "namespace");
      if (!namespaces.get(name)) throw notFound(`namespace "${name}"`);
      const report = await usage.check(name);
      const leaseCount = leases.count(name);
      const held = [...report.objects, ...(leaseCount > 0 ? [plural(leaseCount, "lease")] : [])];
      if (held.length > 0) throw failedPrecondition(`namespace "${name}" must be empty, but it still has ${held.join(", ")}`);
      if (report.unknown.length > 0) {
        throw failedPrecondition(`namespace "${name}" cannot be deleted: cannot tell whether it is empty (${report.unknown.join("; ")})`);
      }
      // Leases are checked again inside the delete's transaction: one may have been
      // created while the holders were being asked.
      const result = namespaces.delete(name);
      if (result === "not found") throw notFound(`namespace "${name}"`);
      if (result === "has leases") throw failedPrecondition(`namespace "${name}" must be empty, but it still has leases`);
      // The envelope carries the deleted namespace itself, as containerd's does.
      publish(name, "/namespaces/delete", "containerd.events.NamespaceDelete", NamespaceDelete, { name });
      return {};
    },
  };
}
