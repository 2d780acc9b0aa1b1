// berth's entry: kept to the compile cache and one dynamic import, because what it
// imports statically is compiled before the cache is on; the command line proper, and
// each command's own code, are chunks of their own (scripts/build.ts), compiled
// through the cache and loaded only when their command runs.
import { useCompileCache } from "../../core/compile-cache.ts";

useCompileCache();
const { main } = await import("./cli.ts");
await main(process.argv.slice(2));
