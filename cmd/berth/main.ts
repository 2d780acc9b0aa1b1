// berth's entry: kept to the compile cache and one dynamic import, because what it
// imports statically is compiled before the cache is on; the command line proper is
// dist/berth-cli.js (scripts/build.ts), compiled through the cache.
import { useCompileCache } from "../../core/compile-cache.ts";

useCompileCache();
// A computed specifier: the bundler leaves it alone, so the CLI stays a bundle of its own.
const { main } = (await import(new URL("./berth-cli.js", import.meta.url).href)) as typeof import("./cli.ts");
await main(process.argv.slice(2));
