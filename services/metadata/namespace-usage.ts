// Whether the other processes still hold objects in a namespace. Each process in
// namespaceHolders answers berth.internal.v1.NamespaceUsage/Check on its own socket.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { NamespaceUsageDefinition } from "../../core/gen/berth/internal/v1/namespace_usage.ts";
import { serviceSocketPath } from "../../core/config.ts";
import { grpcClient } from "../../core/grpc-client.ts";
import { namespaceHolders } from "../../core/routes.ts";

export interface NamespaceUsageReport {
  /** What holders reported still there, e.g. "2 blobs". */
  objects: string[];
  /** Holders that could not answer, with why: the namespace may or may not be empty. */
  unknown: string[];
}

export interface NamespaceUsage {
  check(namespace: string): Promise<NamespaceUsageReport>;
}

const checkTimeoutMs = 5000;

export class HolderNamespaceUsage implements NamespaceUsage {
  private readonly root: string;
  private readonly state: string;
  private readonly holders: readonly string[];

  constructor(root: string, state: string, holders: readonly string[] = namespaceHolders) {
    this.root = root;
    this.state = state;
    this.holders = holders;
  }

  async check(namespace: string): Promise<NamespaceUsageReport> {
    const report: NamespaceUsageReport = { objects: [], unknown: [] };
    await Promise.all(
      this.holders.map(async (holder) => {
        // A holder keeps its store under <root>/<name>; without one it has never
        // stored anything (e.g. it is not built yet), so there is nobody to ask.
        if (!existsSync(join(this.root, holder))) return;
        try {
          const usage = await grpcClient(NamespaceUsageDefinition, serviceSocketPath(this.state, holder)).check(
            { namespace },
            { signal: AbortSignal.timeout(checkTimeoutMs) },
          );
          if (!usage.empty) report.objects.push(usage.detail || `objects in the ${holder} service`);
        } catch (err) {
          report.unknown.push(`${holder}: ${(err as Error).message}`);
        }
      }),
    );
    return report;
  }
}
