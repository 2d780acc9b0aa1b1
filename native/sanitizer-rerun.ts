// The native tests run twice: against the Release addon, then once more in a child test
// process that loads the ASan/UBSan build (LD_PRELOAD of gcc's libasan), so every check
// also runs under the sanitizers. The child sees BERTH_NATIVE_SANITIZER_CHILD=1.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const sanitizerChild = process.env.BERTH_NATIVE_SANITIZER_CHILD === "1";
export const sanitizeBuild = join(import.meta.dirname, "build", "Sanitize", "berth_native.node");

/**
 * Reruns `testFile` with the sanitized addon and asserts it ran at least `minPassed` checks,
 * all passing, with no sanitizer report. The child's scratch dir (BERTH_NATIVE_TEST_DIR)
 * goes through `removeDir` afterwards, which must also undo what a killed child left.
 */
export function rerunUnderSanitizers(testFile: string, minPassed: number, timeoutMs: number, removeDir = (dir: string) => rmSync(dir, { recursive: true, force: true })): void {
  assert.ok(existsSync(sanitizeBuild), `${sanitizeBuild} is missing: npm run build makes it`);
  const libasan = execFileSync("gcc", ["-print-file-name=libasan.so"], { encoding: "utf8" }).trim();
  assert.ok(existsSync(libasan), `libasan not found (gcc says ${libasan})`);
  const dir = mkdtempSync(join(tmpdir(), "berth-native-sanitize-"));
  let child;
  try {
    child = spawnSync(process.execPath, ["--test", "--test-reporter=tap", testFile], {
      encoding: "utf8",
      timeout: timeoutMs,
      env: {
        ...process.env,
        BERTH_NATIVE_SANITIZER_CHILD: "1",
        BERTH_NATIVE_TEST_DIR: dir,
        BERTH_NATIVE_ADDON: sanitizeBuild,
        LD_PRELOAD: libasan,
        // Node itself is not built with ASan and keeps allocations alive at exit.
        ASAN_OPTIONS: "detect_leaks=0:halt_on_error=1",
        UBSAN_OPTIONS: "print_stacktrace=1:halt_on_error=1",
        // Else the child thinks it reports to this runner, in its binary format.
        NODE_TEST_CONTEXT: undefined,
      },
    });
  } finally {
    removeDir(dir);
  }
  const output = `${child.stdout}\n${child.stderr}`;
  assert.doesNotMatch(output, /AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|runtime error:/, output);
  assert.equal(child.status, 0, output);
  assert.match(output, /^# fail 0$/m, output);
  const passed = Number(/^# pass (\d+)$/m.exec(output)?.[1] ?? 0);
  assert.ok(passed >= minPassed, `the child ran ${passed} checks:\n${output}`);
}
