// The OCI distribution client: resolve, fetch and push against registries, with
// auth, TLS, mirrors and retries. Composable steps for the daemon's job layer.
export * from "./reference.ts";
export * from "./retry.ts";
export * from "./errors.ts";
export * from "./hosts.ts";
export * from "./credentials.ts";
export * from "./auth.ts";
export * from "./client.ts";
export * from "./manifests.ts";
export * from "./resolve.ts";
export * from "./blobs.ts";
export * from "./pull.ts";
export * from "./push.ts";
export * from "./login.ts";
export * from "./settings.ts";
