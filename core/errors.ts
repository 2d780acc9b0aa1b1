// One typed error family for every process. Services throw BerthError; the gRPC
// middleware maps it to a status once (grpcStatusOf), the Engine API to an HTTP
// status once (httpStatusOf). Messages end with containerd's class suffix
// (": not found") because Go clients read the class from it.
import { ClientError, Status } from "nice-grpc-common";

export type ErrorKind =
  | "invalid argument"
  | "not found"
  | "already exists"
  | "failed precondition"
  | "unavailable"
  | "not implemented"
  | "out of range"
  | "canceled"
  | "deadline exceeded"
  | "unknown";

export class BerthError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: ErrorOptions) {
    super(kind === "unknown" || message.endsWith(`: ${kind}`) ? message : `${message}: ${kind}`, options);
    this.kind = kind;
    this.name = "BerthError";
  }
}

export const invalidArgument = (msg: string) => new BerthError("invalid argument", msg);
export const notFound = (msg: string) => new BerthError("not found", msg);
export const alreadyExists = (msg: string) => new BerthError("already exists", msg);
export const failedPrecondition = (msg: string) => new BerthError("failed precondition", msg);
export const unavailable = (msg: string) => new BerthError("unavailable", msg);
export const notImplemented = (msg: string) => new BerthError("not implemented", msg);
export const outOfRange = (msg: string) => new BerthError("out of range", msg);

const grpcStatus: Record<ErrorKind, Status> = {
  "invalid argument": Status.INVALID_ARGUMENT,
  "not found": Status.NOT_FOUND,
  "already exists": Status.ALREADY_EXISTS,
  "failed precondition": Status.FAILED_PRECONDITION,
  unavailable: Status.UNAVAILABLE,
  "not implemented": Status.UNIMPLEMENTED,
  "out of range": Status.OUT_OF_RANGE,
  canceled: Status.CANCELLED,
  "deadline exceeded": Status.DEADLINE_EXCEEDED,
  unknown: Status.UNKNOWN,
};

const httpStatus: Record<ErrorKind, number> = {
  "invalid argument": 400,
  "not found": 404,
  "already exists": 409,
  "failed precondition": 409,
  unavailable: 503,
  "not implemented": 501,
  "out of range": 416,
  canceled: 499,
  "deadline exceeded": 504,
  unknown: 500,
};

export function grpcStatusOf(kind: ErrorKind): Status {
  return grpcStatus[kind];
}

export function httpStatusOf(kind: ErrorKind): number {
  return httpStatus[kind];
}

const kindByGrpcStatus = new Map<Status, ErrorKind>(
  Object.entries(grpcStatus).map(([kind, status]) => [status, kind as ErrorKind]),
);

/** The error kind a gRPC status code stands for (clients use it to branch on NOT_FOUND etc.). */
export function kindOfGrpcStatus(code: Status): ErrorKind {
  return kindByGrpcStatus.get(code) ?? "unknown";
}

/** Every kind there is. */
export const errorKinds = Object.keys(grpcStatus) as ErrorKind[];

/** The message without its kind suffix (": not found"), e.g. to add to it before the kind. */
export function messageWithoutKind(err: BerthError): string {
  return err.message.endsWith(`: ${err.kind}`) ? err.message.slice(0, -(err.kind.length + 2)) : err.message;
}

/** The kind of any error: a BerthError's own, a gRPC client error's by its status, else unknown. */
export function errorKind(err: unknown): ErrorKind {
  if (err instanceof BerthError) return err.kind;
  if (err instanceof ClientError) return kindOfGrpcStatus(err.code);
  return "unknown";
}

/** The gRPC status code of a kind, as the text a trailer carries. */
export const grpcStatusText = (kind: ErrorKind) => String(grpcStatus[kind]);

/**
 * A failed call to another Berth service, kept as our own error class so that its
 * status reaches our caller unchanged (a lease NOT_FOUND stays NOT_FOUND).
 */
export function fromClientError(err: unknown, what: string): unknown {
  if (!(err instanceof ClientError)) return err;
  const kind = kindOfGrpcStatus(err.code);
  return new BerthError(kind, kind === "unknown" ? `${what}: ${err.details}` : err.details || what);
}
