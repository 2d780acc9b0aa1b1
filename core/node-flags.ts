// V8 flags for the Node processes that stay up while the daemon is idle (berthd itself,
// through its launchers, and every always-on service): they sit idle most of their
// life, so they are tuned for size. Measured per process, idle, with
// bench/idle-memory.ts (docs/architecture.md has the figures):
// - --lite-mode: no optimizing compiler and no feedback vectors until a function is
//   hot; the largest saving (~2.3 MiB private each). These processes' hot paths are
//   native (hashing, file I/O, HTTP/2 framing), so their calls barely slow down.
// - --max-semi-space-size=1: a 1 MiB young generation instead of up to 16 MiB
//   (~0.3 MiB idle, more after a burst, until the idle trim returns it).
// - --v8-pool-size=1: one V8 worker thread instead of one per core, each with its
//   own malloc arena and stack.
// On-demand processes (diff, jobs) run only while they work, so they keep V8's
// defaults, tuned for speed. --jitless, --no-opt and --single-threaded saved less
// than --lite-mode; MALLOC_ARENA_MAX and UV_THREADPOOL_SIZE saved nothing measurable
// (the libuv pool starts on first use).
export const idleTunedNodeFlags: readonly string[] = ["--lite-mode", "--max-semi-space-size=1", "--v8-pool-size=1"];
