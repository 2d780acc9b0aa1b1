// berthctl's entry: kept tiny, because everything it imports statically is compiled
// before the compile cache is on. The command line itself (commander, gRPC clients,
// every command) is a separate chunk, loaded once the cache is enabled.
import { useCompileCache } from "../../core/compile-cache.ts";

useCompileCache();
await import("./cli.ts");
