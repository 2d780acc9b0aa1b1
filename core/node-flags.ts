// V8 flags for the Node processes that stay up while the daemon is idle. They sit idle
// most of their life, so they are tuned for size. Measured per process, idle, with
// bench/idle-memory.ts (docs/architecture.md has the figures):
// - --max-semi-space-size=1: a 1 MiB young generation instead of up to 16 MiB.
// - --v8-pool-size=1: one V8 worker thread instead of one per core, each with its
//   own malloc arena and stack.
// - --lite-mode: no optimizing compiler and no feedback vectors until a function is
//   hot; the largest saving (~2.3 MiB private each), for the always-on services, whose
//   hot paths are native (process spawns, file I/O). Not for berthd: its gateway's
//   HTTP/2 proxying is JavaScript that every call goes through, and bursts through a
//   lite-mode berthd measured markedly slower.
// On-demand processes run only while they work, so they keep V8's defaults, tuned for
// speed. --jitless, --no-opt and --single-threaded saved less than --lite-mode;
// MALLOC_ARENA_MAX=2 and UV_THREADPOOL_SIZE (the libuv pool starts on first use) saved
// nothing measurable; for berthd, --optimize-for-size and --bytecode-old-age=1 neither,
// and --lite-mode 1.3 MiB at 0.49 → 0.70 ms per gateway call (bench/berthd-memory.ts).
// The bundles are built without comments for memory too (scripts/build.ts says why).

/** berthd's, passed by its launchers (cmd/berthd/bin/berthd, scripts/install-launchers.sh). */
export const berthdNodeFlags: readonly string[] = ["--max-semi-space-size=1", "--v8-pool-size=1"];

/** The always-on service processes' (core/routes.ts), passed by berthd's supervisor. */
export const idleTunedNodeFlags: readonly string[] = ["--lite-mode", ...berthdNodeFlags];
