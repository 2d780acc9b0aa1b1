// containerd.services.leases.v1.Leases: named, labelled sets of resources (content,
// ingests, snapshots) that garbage collection must keep while the lease lives. A
// lease going away releases its resources; it deletes nothing itself.
import { leaseId } from "../../core/ids.ts";
import type { CallContext } from "nice-grpc";
import type {
  AddResourceRequest,
  CreateRequest,
  DeleteRequest,
  DeleteResourceRequest,
  LeasesServiceImplementation,
  ListRequest,
  ListResourcesRequest,
  Resource,
} from "../../core/gen/containerd/services/leases/v1/leases.ts";
import { alreadyExists, invalidArgument, notFound } from "../../core/errors.ts";
import { fieldsAndLabels, parseFilters } from "../../core/filters.ts";
import { isDigest } from "../../core/digest.ts";
import { namespaceOf } from "../../core/grpc-server.ts";
import { validateLabels } from "../../core/labels.ts";
import { timestampFromMillis } from "../../core/timestamp.ts";
import type { LeaseRecord, LeaseResource, LeaseStore } from "./store.ts";
import type { CollectorFront } from "./collector-front.ts";


function validateResource(resource: Resource | undefined): LeaseResource {
  if (!resource) throw invalidArgument("lease resource is required");
  const { type, id } = resource;
  const parts = type.split("/");
  const known =
    ((type === "content" || type === "ingests") && parts.length === 1) ||
    (parts[0] === "snapshots" && parts.length === 2 && parts[1] !== "");
  if (!known) throw invalidArgument(`unsupported resource type "${type}": expected content, ingests or snapshots/<snapshotter>`);
  if (id === "") throw invalidArgument(`lease resource of type ${type} needs an id`);
  if (type === "content" && !isDigest(id)) throw invalidArgument(`invalid content resource id "${id}": expected a digest`);
  return { type, id };
}

const toLease = (lease: LeaseRecord) => ({ id: lease.id, createdAt: timestampFromMillis(lease.createdAtMs), labels: lease.labels });

export function leasesService(leases: LeaseStore, collector: Pick<CollectorFront, "collectNow">): LeasesServiceImplementation {
  return {
    async create(request: CreateRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const labels = validateLabels(request.labels);
      const generated = request.id === "";
      // A generated id that collides is simply drawn again.
      for (let attempt = 0; attempt < 5; attempt++) {
        const lease: LeaseRecord = { id: generated ? leaseId() : request.id, createdAtMs: Date.now(), labels };
        if (leases.create(namespace, lease)) return { lease: toLease(lease) };
        if (!generated) break;
      }
      throw alreadyExists(`lease "${request.id}"`);
    },

    // What the lease held may be unreferenced now: `sync` collects it before replying.
    // Without it the next collection does (clients like ctr drop a short lease after
    // every command, so collecting after each would sweep whatever they left
    // unreferenced on purpose, which containerd leaves until its next collection too).
    async delete(request: DeleteRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      if (!leases.delete(namespace, request.id)) throw notFound(`lease "${request.id}"`);
      if (request.sync) await collector.collectNow();
      return {};
    },

    async list(request: ListRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const matches = parseFilters(request.filters);
      return { leases: leases.list(namespace).filter((l) => matches(fieldsAndLabels({ id: l.id }, l.labels))).map(toLease) };
    },

    async addResource(request: AddResourceRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const resource = validateResource(request.resource);
      if (!leases.addResource(namespace, request.id, resource)) throw notFound(`lease "${request.id}"`);
      return {};
    },

    async deleteResource(request: DeleteResourceRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const resource = validateResource(request.resource);
      if (!leases.deleteResource(namespace, request.id, resource)) throw notFound(`lease "${request.id}"`);
      return {};
    },

    async listResources(request: ListResourcesRequest, ctx: CallContext) {
      const namespace = namespaceOf(ctx);
      const resources = leases.listResources(namespace, request.id);
      if (!resources) throw notFound(`lease "${request.id}"`);
      return { resources: resources.map((r) => ({ id: r.id, type: r.type })) };
    },
  };
}
