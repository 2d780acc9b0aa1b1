// An esbuild plugin: bullmq's package index re-exports its PostgreSQL backend (its
// classes and the SQL of every command and migration, inlined), which Berth never uses:
// its queues live in Redis. Bundled, that backend was a tenth of dist/jobs.js (318 of
// 3190 KiB), compiled and evaluated at every start of the jobs process and kept in its
// heap as source. The index's import of it gets an empty module instead; every other
// import of bullmq's files is left alone, so the Redis backend is bundled as published.
// test/bundles.test.ts checks that no Berth source imports a Postgres export (it would
// be undefined) and that the backend is out of the bundles.
import type { Plugin } from "esbuild";

const bullmqIndex = /[\\/]node_modules[\\/]bullmq[\\/]dist[\\/](cjs|esm)[\\/]index\.js$/;

export const withoutBullmqPostgres: Plugin = {
  name: "without-bullmq-postgres",
  setup(build) {
    build.onResolve({ filter: /^\.\/postgres(\/index\.js)?$/ }, (args) =>
      bullmqIndex.test(args.importer) ? { path: "bullmq-postgres", namespace: "without-bullmq-postgres" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "without-bullmq-postgres" }, () => ({ contents: "module.exports = {};", loader: "js" }));
  },
};
