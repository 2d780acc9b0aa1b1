// An esbuild plugin: modules that our dependencies import but Berth never runs stay
// out of the bundles. A process keeps its bundle's source in its heap for as long as it
// runs (scripts/build.ts), and compiles, hashes and evaluates the parts it loads at
// every start. Three such, each replaced by a stand-in where it is imported:
// - bullmq's package index re-exports its PostgreSQL backend (classes, and the SQL of
//   every command and migration inlined): 318 of dist/jobs.js's 3188 KiB, evaluated
//   at every start of the jobs process. Berth's queues live in Redis. Only the index's
//   import is replaced (by an empty module), so the Redis backend is bundled as published.
// - @grpc/proto-loader (with protobufjs, long and its JSON descriptors, ~170 KiB in every
//   process's bundle): grpc-js loads it only to serve its channelz and ORCA services,
//   which Berth does not register; its stand-in throws, naming itself, if one ever is.
// - undici's experimental Milo HTTP parser (two WebAssembly builds, 153 KiB, in the
//   bundles with the registry client): undici uses it only when UNDICI_USE_MILO=1, and
//   llhttp otherwise; with that set, the stand-in fails the request, naming the variable.
// test/process-bundles.test.ts checks that no Berth source imports what is left out and
// that the bundles hold neither.
import type { Plugin } from "esbuild";

const bullmqIndex = /[\\/]node_modules[\\/]bullmq[\\/]dist[\\/](cjs|esm)[\\/]index\.js$/;
const undiciParser = /[\\/]node_modules[\\/]undici[\\/]lib[\\/]dispatcher[\\/]parser-h1\.js$/;

const protoLoaderStandIn = `module.exports = new Proxy({}, {
  get(_, key) {
    if (typeof key === "symbol" || key === "__esModule") return undefined;
    throw new Error("@grpc/proto-loader is left out of Berth's bundles (scripts/unused-modules-plugin.ts): grpc-js asked for its " + key);
  },
});`;

const miloStandIn = `exports.setup = () => {
  throw new Error("undici's Milo parser is left out of Berth's bundles (scripts/unused-modules-plugin.ts): unset UNDICI_USE_MILO");
};`;

export const withoutUnusedModules: Plugin = {
  name: "without-unused-modules",
  setup(build) {
    build.onResolve({ filter: /^\.\/postgres(\/index\.js)?$/ }, (args) =>
      bullmqIndex.test(args.importer) ? { path: "bullmq-postgres", namespace: "unused-module" } : undefined,
    );
    build.onResolve({ filter: /^@grpc\/proto-loader$/ }, () => ({ path: "grpc-proto-loader", namespace: "unused-module" }));
    build.onResolve({ filter: /^\.\.\/milo\/(no-)?simd\.js$/ }, (args) =>
      undiciParser.test(args.importer) ? { path: "undici-milo", namespace: "unused-module" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "unused-module" }, (args) => ({
      contents: { "grpc-proto-loader": protoLoaderStandIn, "undici-milo": miloStandIn }[args.path] ?? "module.exports = {};",
      loader: "js",
    }));
  },
};
