// gRPC status codes, errors and call options, without a transport: only
// nice-grpc-common, so code that runs without grpc-js (berthctl on the direct client,
// see grpc-direct.ts) can use them. grpc-client.ts re-exports all of it.
import { ClientError, Metadata, Status, type CallOptions } from "nice-grpc-common";
import { errorKind } from "./errors.ts";
import { namespaceHeader, leaseHeader } from "./headers.ts";

/** Call options that select a namespace (and optionally a lease and an abort signal). */
export function inNamespace(namespace: string, lease?: string, signal?: AbortSignal): CallOptions {
  const metadata = Metadata({ [namespaceHeader]: namespace });
  if (lease) metadata.set(leaseHeader, lease);
  return signal ? { metadata, signal } : { metadata };
}

export function grpcCode(err: unknown): Status | undefined {
  return err instanceof ClientError ? err.code : undefined;
}

export const isNotFound = (err: unknown) => err instanceof ClientError && errorKind(err) === "not found";
export const isAlreadyExists = (err: unknown) => err instanceof ClientError && errorKind(err) === "already exists";

/** The server's message without nice-grpc's "/pkg.Service/Method" prefix. */
export function errorMessage(err: unknown): string {
  if (err instanceof ClientError) return err.details || Status[err.code] || `status ${err.code}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The largest gRPC message a Berth process sends or accepts as a client, and sends as a
 * server: containerd's default (16 MiB) both ways, so what ctr accepts we send.
 */
export const maxMessageBytes = 16 * 1024 * 1024;
