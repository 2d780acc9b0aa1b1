// The content service's calls to the metadata service, named for what content needs.
import { ContentDelete } from "../../core/gen/containerd/events/content.ts";
import type { MetadataClient } from "../../core/metadata-client.ts";

export type LeaseResource = "content" | "ingests";

export class ContentMetadata {
  private readonly client: MetadataClient;

  constructor(client: MetadataClient) {
    this.client = client;
  }

  ensureNamespace(namespace: string): Promise<void> {
    return this.client.ensureNamespace(namespace);
  }

  /** The namespace may be deleted now; the next write must create it again. */
  forgetNamespace(namespace: string): void {
    this.client.forgetNamespace(namespace);
  }

  addToLease(namespace: string, lease: string, type: LeaseResource, id: string): Promise<void> {
    return this.client.addLeaseResource(namespace, lease, type, id);
  }

  /** A committed ingest no longer needs its lease entry (containerd drops it too). In the background. */
  dropFromLease(namespace: string, lease: string, type: LeaseResource, id: string): void {
    this.client.removeLeaseResource(namespace, lease, type, id);
  }

  /** In the background (events are best effort). */
  contentDeleted(namespace: string, digest: string): void {
    this.client.publish(namespace, "/content/delete", "containerd.events.ContentDelete", ContentDelete, { digest });
  }

  /** Waits for what is still being sent in the background. */
  flush(): Promise<void> {
    return this.client.flush();
  }
}
