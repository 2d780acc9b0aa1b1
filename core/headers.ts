// The gRPC metadata keys containerd clients and servers agree on. A module of their own
// so clients (berthctl) do not load the server bootstrap (and its logger) to name them.
export const namespaceHeader = "containerd-namespace";
export const leaseHeader = "containerd-lease";
