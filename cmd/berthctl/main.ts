// berthctl's entry: kept small, because what it imports statically is compiled before
// the compile cache is on. `version` is answered here (fast-path.ts); everything else
// loads the command line proper (commander, every command) from its own bundle next
// to this one (dist/berthctl-cli.js, see scripts/build.ts), compiled through the cache.
import { useCompileCache } from "../../core/compile-cache.ts";
import { runFastPath } from "./fast-path.ts";

// The fast path's requests go out first; the cache is set up while the server answers.
const answered = runFastPath(process.argv.slice(2), process.env);
useCompileCache();
if (!(await answered)) {
  // A computed specifier: the bundler leaves it alone, so the CLI stays a bundle of its own.
  await import(new URL("./berthctl-cli.js", import.meta.url).href);
}
