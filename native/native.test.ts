// The native addon against the real kernel (needs root). The same checks run twice: here
// against the Release build, and in a child process against the ASan/UBSan build
// (native/build/Sanitize), which must pass and print no sanitizer report.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { constants as osConstants, hostname, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as native from "./index.ts";
import { ChildFailedError, ChildTimeoutError, describeExit, execChecked, runCollected, spawnChild } from "./spawn.ts";
import { rerunUnderSanitizers, sanitizeBuild, sanitizerChild } from "./sanitizer-rerun.ts";

const here = dirname(fileURLToPath(import.meta.url));
const needsRoot = process.getuid?.() !== 0 && "needs root (mount, mknod, trusted.* xattrs)";

// Asserts fn throws an fs-style system error with this code and syscall.
function assertSystemError(fn: () => unknown, code: string, syscall: string, path: string): void {
  assert.throws(fn, (error: NodeJS.ErrnoException) => {
    assert.ok(error instanceof Error);
    assert.equal(error.code, code);
    assert.equal(error.syscall, syscall);
    assert.equal(error.path, path);
    assert.equal(typeof error.errno, "number");
    assert.ok(error.errno! < 0, "errno is negated, as in Node's fs errors");
    assert.match(error.message, new RegExp(`^${code}: .+, ${syscall} '`));
    return true;
  });
}

function assertArgError(fn: () => unknown, type: typeof TypeError | typeof RangeError, code: string): void {
  assert.throws(fn, (error: NodeJS.ErrnoException) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
    assert.equal(error.code, code);
    return true;
  });
}

function mountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(" ")[4]!);
}

function isMountPoint(path: string): boolean {
  return mountPoints().includes(path);
}

// Detaches every mount under dir (deepest first), then deletes it: a failed check, or a
// child killed by a sanitizer, must not leave mounts behind.
function removeTestDir(dir: string): void {
  const inside = mountPoints().filter((point) => point.startsWith(`${dir}/`));
  for (const point of inside.sort((a, b) => b.length - a.length)) native.umount(point, native.umountFlags.MNT_DETACH);
  rmSync(dir, { recursive: true, force: true });
}

describe(sanitizerChild ? "native addon (ASan/UBSan build)" : "native addon (Release build)", { skip: needsRoot }, () => {
  let base = "";
  let tmpfs = "";

  before(() => {
    // The sanitizer child works inside its parent's dir, which the parent removes.
    base = mkdtempSync(join(process.env.BERTH_NATIVE_TEST_DIR ?? tmpdir(), "berth-native-"));
    tmpfs = join(base, "tmpfs");
    mkdirSync(tmpfs);
    native.mount("tmpfs", tmpfs, "tmpfs", 0, "size=16m,mode=0755");
  });

  after(() => {
    if (base) removeTestDir(base);
  });

  test("loads the build selected for this run", () => {
    const expected = sanitizerChild ? sanitizeBuild : join(here, "build", "Release", "berth_native.node");
    assert.equal(native.addonPath(), expected);
    native.nativeAddon();
    const maps = readFileSync("/proc/self/maps", "utf8");
    assert.ok(maps.includes(expected), "the addon is mapped from the expected file");
    if (sanitizerChild) assert.match(maps, /libasan\.so/);
  });

  test("constants match the Linux ABI and the wrapper's key lists", () => {
    const raw = native.nativeAddon();
    assert.deepEqual(Object.keys(native.mountFlags), Object.keys(raw.mountFlags));
    assert.deepEqual(Object.keys(native.umountFlags), Object.keys(raw.umountFlags));
    assert.deepEqual(Object.keys(native.xattrFlags), Object.keys(raw.xattrFlags));
    assert.deepEqual(Object.keys(native.fsMagic), Object.keys(raw.fsMagic));
    const { MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC, MS_REMOUNT, MS_PRIVATE, MS_SHARED } = native.mountFlags;
    assert.deepEqual([MS_RDONLY, MS_NOSUID, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_SHARED], [1, 2, 32, 4096, 16384, 1 << 18, 1 << 20]);
    assert.deepEqual({ ...native.umountFlags }, { MNT_FORCE: 1, MNT_DETACH: 2, MNT_EXPIRE: 4, UMOUNT_NOFOLLOW: 8 });
    assert.deepEqual({ ...native.xattrFlags }, { XATTR_CREATE: 1, XATTR_REPLACE: 2 });
    assert.equal(native.fsMagic.TMPFS_MAGIC, 0x01021994);
    assert.equal(native.fsMagic.OVERLAYFS_SUPER_MAGIC, 0x794c7630);
    assert.ok(Object.isFrozen(native.mountFlags) && Object.isFrozen(raw.mountFlags));
  });

  test("mounts a tmpfs and statfsType reports TMPFS_MAGIC; umount restores the parent fs", () => {
    const hostType = native.statfsType(base);
    assert.notEqual(hostType, 0x01021994, "the temp dir itself must not be on tmpfs for this check");
    const dir = join(base, "another-tmpfs");
    mkdirSync(dir);
    native.mount("tmpfs", dir, "tmpfs", native.mountFlags.MS_NOSUID, "size=1m");
    try {
      assert.equal(native.statfsType(dir), 0x01021994);
      assert.ok(isMountPoint(dir));
      writeFileSync(join(dir, "on-tmpfs"), "x");
    } finally {
      native.umount(dir, 0);
    }
    assert.ok(!isMountPoint(dir));
    assert.equal(native.statfsType(dir), hostType);
    assert.ok(!existsSync(join(dir, "on-tmpfs")), "the file lived on the unmounted tmpfs");
  });

  test("a read-only bind mount refuses writes with EROFS", () => {
    const source = join(base, "bind-source");
    const target = join(base, "bind-target");
    mkdirSync(source);
    mkdirSync(target);
    writeFileSync(join(source, "file"), "original");
    const { MS_BIND, MS_REMOUNT, MS_RDONLY } = native.mountFlags;
    native.mount(source, target, null, MS_BIND, null);
    try {
      native.mount(null, target, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null);
      assert.equal(readFileSync(join(target, "file"), "utf8"), "original");
      assert.throws(() => writeFileSync(join(target, "file"), "changed"), { code: "EROFS" });
      assert.throws(() => writeFileSync(join(target, "new"), "x"), { code: "EROFS" });
      writeFileSync(join(source, "file"), "changed at the source");
      assert.equal(readFileSync(join(target, "file"), "utf8"), "changed at the source");
    } finally {
      native.umount(target, native.umountFlags.MNT_DETACH);
    }
    assert.ok(!isMountPoint(target));
    assert.ok(!existsSync(join(target, "file")));
  });

  test("mknod makes character devices (with glibc's dev_t encoding) and FIFOs", () => {
    const null0 = join(tmpfs, "char-0-0");
    native.mknod(null0, constants.S_IFCHR | 0o600, 0, 0);
    const st = statSync(null0);
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, 0);
    assert.equal(st.mode & 0o777, 0o600);

    // Minor numbers above 255 are split across dev_t; a plain shift would get this wrong.
    const wide = join(tmpfs, "char-4-300");
    native.mknod(wide, constants.S_IFCHR | 0o600, 4, 300);
    assert.equal(statSync(wide).rdev, (300 & 0xff) | ((300 & ~0xff) << 12) | (4 << 8));

    const fifo = join(tmpfs, "fifo");
    native.mknod(fifo, constants.S_IFIFO | 0o644, 0, 0);
    assert.ok(statSync(fifo).isFIFO());

    assertSystemError(() => native.mknod(fifo, constants.S_IFIFO | 0o644, 0, 0), "EEXIST", "mknod", fifo);
  });

  // tmpfs has user.* xattrs since Linux 6.6; the host temp dir checks a disk filesystem too.
  for (const where of ["tmpfs", "host"] as const) {
    test(`xattrs round-trip on ${where}: user.* and trusted.*`, () => {
      const file = join(where === "tmpfs" ? tmpfs : base, `xattr-file-${where}`);
      writeFileSync(file, "");
      const { XATTR_CREATE, XATTR_REPLACE } = native.xattrFlags;

      assert.equal(native.lgetxattr(file, "user.berth.missing"), null);
      native.lsetxattr(file, "user.berth.label", Buffer.from("hello"), 0);
      native.lsetxattr(file, "trusted.berth.opaque", Buffer.from([0, 1, 2, 255]), XATTR_CREATE);
      assert.deepEqual(native.lgetxattr(file, "user.berth.label"), Buffer.from("hello"));
      assert.deepEqual(native.lgetxattr(file, "trusted.berth.opaque"), Buffer.from([0, 1, 2, 255]));
      assert.deepEqual(native.llistxattr(file).filter((name) => name.includes("berth")).sort(), [
        "trusted.berth.opaque",
        "user.berth.label",
      ]);

      assertSystemError(() => native.lsetxattr(file, "user.berth.label", Buffer.from("x"), XATTR_CREATE), "EEXIST", "lsetxattr", file);
      assertSystemError(() => native.lsetxattr(file, "user.berth.nope", Buffer.from("x"), XATTR_REPLACE), "ENODATA", "lsetxattr", file);
      native.lsetxattr(file, "user.berth.label", Buffer.from("replaced"), XATTR_REPLACE);
      assert.deepEqual(native.lgetxattr(file, "user.berth.label"), Buffer.from("replaced"));

      // An empty value exists (a Buffer), unlike a missing one (null).
      native.lsetxattr(file, "user.berth.empty", Buffer.alloc(0), 0);
      assert.deepEqual(native.lgetxattr(file, "user.berth.empty"), Buffer.alloc(0));

      // A view into a larger buffer writes exactly the viewed bytes.
      const backing = Buffer.from("0123456789");
      native.lsetxattr(file, "user.berth.view", new Uint8Array(backing.buffer, backing.byteOffset + 3, 4), 0);
      assert.deepEqual(native.lgetxattr(file, "user.berth.view"), Buffer.from("3456"));

      native.lremovexattr(file, "user.berth.label");
      native.lremovexattr(file, "trusted.berth.opaque");
      assert.equal(native.lgetxattr(file, "user.berth.label"), null);
      assert.equal(native.lgetxattr(file, "trusted.berth.opaque"), null);
      assert.ok(!native.llistxattr(file).includes("user.berth.label"));
      assertSystemError(() => native.lremovexattr(file, "user.berth.label"), "ENODATA", "lremovexattr", file);
    });
  }

  test("large values and long name lists are read whole (sized, not fixed buffers)", () => {
    const file = join(tmpfs, "xattr-large");
    writeFileSync(file, "");
    // 64 KiB is the kernel's XATTR_SIZE_MAX.
    const big = Buffer.alloc(65536, 0);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    native.lsetxattr(file, "trusted.berth.big", big, 0);
    assert.deepEqual(native.lgetxattr(file, "trusted.berth.big"), big);

    const names = Array.from({ length: 150 }, (_, i) => `trusted.berth.${"n".repeat(60)}.${i}`);
    for (const name of names) native.lsetxattr(file, name, Buffer.from("v"), 0);
    const listed = native.llistxattr(file);
    assert.deepEqual(listed.filter((name) => name.includes("nnnn")).sort(), [...names].sort());
    assert.ok(listed.includes("trusted.berth.big"));
  });

  test("paths may be raw bytes (Buffer) that are not UTF-8; look-alike names stay apart", () => {
    const dir = Buffer.from(tmpfs);
    const named = (name: string) => Buffer.concat([dir, Buffer.from("/"), Buffer.from(name, "latin1")]);
    native.mknod(named("fifo\xff"), constants.S_IFIFO | 0o600);
    native.mknod(named("fifo\xfe"), constants.S_IFIFO | 0o600);
    native.lsetxattr(named("fifo\xff"), "trusted.berth.which", Buffer.from("ff"), 0);
    native.lsetxattr(named("fifo\xfe"), "trusted.berth.which", Buffer.from("fe"), 0);
    assert.deepEqual(native.lgetxattr(named("fifo\xff"), "trusted.berth.which"), Buffer.from("ff"));
    assert.deepEqual(native.lgetxattr(named("fifo\xfe"), "trusted.berth.which"), Buffer.from("fe"));
    assert.ok(native.llistxattr(named("fifo\xfe")).includes("trusted.berth.which"));
    native.lremovexattr(named("fifo\xfe"), "trusted.berth.which");
    assert.equal(native.lgetxattr(named("fifo\xfe"), "trusted.berth.which"), null);
    assert.deepEqual(native.lgetxattr(named("fifo\xff"), "trusted.berth.which"), Buffer.from("ff"));
    const listed = readdirSync(dir, { encoding: "buffer" }).map((n) => n.toString("latin1"));
    assert.ok(listed.includes("fifo\xff") && listed.includes("fifo\xfe"), listed.join(" "));
    // A NUL byte inside a Buffer path is refused like one in a string.
    assertArgError(() => native.mknod(named("bad\0name"), constants.S_IFIFO | 0o600), TypeError, "ERR_INVALID_ARG_VALUE");
    assertArgError(() => native.lgetxattr(Buffer.from("/\0etc"), "user.x"), TypeError, "ERR_INVALID_ARG_VALUE");
    assertArgError(() => native.llistxattr(new Uint16Array(4) as unknown as Uint8Array), TypeError, "ERR_INVALID_ARG_TYPE");
    assert.ok(!readdirSync(dir, { encoding: "buffer" }).some((n) => n.toString("latin1").startsWith("bad")));
  });

  test("l*xattr act on a symlink itself, not its target", () => {
    const target = join(tmpfs, "link-target");
    const link = join(tmpfs, "link");
    writeFileSync(target, "");
    symlinkSync(target, link);
    native.lsetxattr(link, "trusted.berth.on-link", Buffer.from("link"), 0);
    assert.deepEqual(native.lgetxattr(link, "trusted.berth.on-link"), Buffer.from("link"));
    assert.equal(native.lgetxattr(target, "trusted.berth.on-link"), null);
    assert.ok(native.llistxattr(link).includes("trusted.berth.on-link"));
    assert.ok(!native.llistxattr(target).includes("trusted.berth.on-link"));
    // The kernel allows user.* only on regular files and directories.
    assertSystemError(() => native.lsetxattr(link, "user.berth.x", Buffer.from("x"), 0), "EPERM", "lsetxattr", link);
  });

  test("syscall failures throw fs-style errors", () => {
    const missing = join(base, "does-not-exist");
    assertSystemError(() => native.mount("tmpfs", missing, "tmpfs", 0, null), "ENOENT", "mount", missing);
    assert.throws(() => native.mount("tmpfs", missing, "tmpfs", 0, null), { errno: -2 });
    const notMounted = join(base, "not-a-mount-point");
    mkdirSync(notMounted);
    assertSystemError(() => native.umount(notMounted, 0), "EINVAL", "umount2", notMounted);
    assertSystemError(() => native.mount("none", notMounted, "no-such-fstype", 0, null), "ENODEV", "mount", notMounted);
    assertSystemError(() => native.statfsType(missing), "ENOENT", "statfs", missing);
    assertSystemError(() => native.lgetxattr(missing, "user.x"), "ENOENT", "lgetxattr", missing);
    assertSystemError(() => native.llistxattr(missing), "ENOENT", "llistxattr", missing);
    assertSystemError(() => native.lsetxattr(missing, "user.x", Buffer.from("x"), 0), "ENOENT", "lsetxattr", missing);
    assertSystemError(() => native.lremovexattr(missing, "user.x"), "ENOENT", "lremovexattr", missing);
    assertSystemError(() => native.mknod(join(missing, "dev"), constants.S_IFIFO | 0o600, 0, 0), "ENOENT", "mknod", join(missing, "dev"));
    // A namespace the kernel does not know.
    assertSystemError(() => native.lsetxattr(notMounted, "bogus.x", Buffer.from("x"), 0), "ENOTSUP", "lsetxattr", notMounted);
  });

  test("wrong argument types throw TypeError, out-of-range numbers RangeError", () => {
    // Deliberately wrong calls, as untyped JavaScript could make them.
    const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;
    const raw = native.nativeAddon() as unknown as Record<string, (...args: unknown[]) => unknown>;
    const dir = join(base, "arg-checks");
    mkdirSync(dir, { recursive: true });

    assertArgError(() => loose.mount!(1, dir, "tmpfs", 0, null), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.mount!("tmpfs", null, "tmpfs", 0, null), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.mount!("tmpfs", dir, "tmpfs", "0", null), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.mount!("tmpfs", dir, "tmpfs", 0, {}), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.umount!(dir, 1n), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.mknod!(join(dir, "n"), "8592", 0, 0), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.statfsType!(undefined), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.lsetxattr!(dir, "user.x", "a string, not bytes", 0), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.lsetxattr!(dir, "user.x", new Uint16Array(2), 0), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.lgetxattr!(dir, 7), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.llistxattr!([dir]), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.lremovexattr!(dir, Symbol("x")), TypeError, "ERR_INVALID_ARG_TYPE");

    // Embedded NUL: refused, rather than silently acting on the path before it.
    assertArgError(() => native.statfsType(`${dir}\0/elsewhere`), TypeError, "ERR_INVALID_ARG_VALUE");
    assertArgError(() => native.lgetxattr(dir, "user.a\0b"), TypeError, "ERR_INVALID_ARG_VALUE");

    assertArgError(() => native.umount(dir, -1), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => native.umount(dir, 1.5), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => native.umount(dir, Number.NaN), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => native.mknod(join(dir, "n"), 2 ** 32, 0, 0), RangeError, "ERR_OUT_OF_RANGE");

    // The raw binding insists on every argument.
    assertArgError(() => raw.mount!("tmpfs", dir, "tmpfs", 0), TypeError, "ERR_INVALID_ARG_COUNT");
    assertArgError(() => raw.umount!(dir), TypeError, "ERR_INVALID_ARG_COUNT");
    assertArgError(() => raw.llistxattr!(dir, dir), TypeError, "ERR_INVALID_ARG_COUNT");

    assert.ok(!isMountPoint(dir), "no rejected call reached the kernel");
    assert.ok(!existsSync(join(dir, "n")));
  });

  test("the addon is loaded on first use, not on import", () => {
    const script = `
      const hasAddon = () => require("node:fs").readFileSync("/proc/self/maps", "utf8").includes("berth_native");
      import(${JSON.stringify(join(here, "index.ts"))}).then((native) => {
        const before = hasAddon();
        native.statfsType("/");
        console.log(JSON.stringify({ before, after: hasAddon() }));
      });`;
    const output = execFileSync(process.execPath, ["-e", script], { encoding: "utf8" });
    assert.deepEqual(JSON.parse(output), { before: false, after: true });
  });
});

describe(`pidfds and namespaces (${sanitizerChild ? "ASan/UBSan" : "Release"} build)`, { skip: needsRoot }, () => {
  const children: ChildProcess[] = [];
  const strays: number[] = [];
  const fds: number[] = [];
  const track = (fd: number) => (fds.push(fd), fd);

  after(() => {
    for (const child of children) child.kill("SIGKILL");
    for (const pid of strays) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const fd of fds) {
      try {
        closeSync(fd);
      } catch {
        // closed by the test
      }
    }
  });

  function spawnSleeper(): ChildProcess {
    const child = spawn("sleep", ["1000"], { stdio: "ignore" });
    children.push(child);
    return child;
  }

  test("pidfdSendSignal kills a child; pidfdExited and pidfdWait see the exit", async () => {
    const child = spawnSleeper();
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
    const fd = track(native.pidfdOpen(child.pid!, 0));
    assert.ok(fd > 2);
    assert.ok(fcntlCloexec(fd), "the pidfd is close-on-exec");
    assert.equal(native.pidfdExited(fd), false);
    const waited = native.pidfdWait(fd);
    native.pidfdSendSignal(fd, osConstants.signals.SIGTERM);
    await waited;
    assert.equal(native.pidfdExited(fd), true);
    assert.equal(await exited, "SIGTERM");
    // Once reaped, the process is gone for good: no signal can reach a reused pid.
    assertSystemError(() => native.pidfdSendSignal(fd, 0), "ESRCH", "pidfd_send_signal", `fd ${fd}`);
  });

  test("pidfdWait watches a process that is not this one's child", async () => {
    // A grandchild whose parent exits: it is reparented away, as a detached shim is.
    const output = execFileSync("sh", ["-c", "sleep 1000 >/dev/null 2>&1 & echo $!"], { encoding: "utf8" });
    const pid = Number(output.trim());
    strays.push(pid);
    const fd = track(native.pidfdOpen(pid, native.pidfdFlags.PIDFD_NONBLOCK));
    let settled = false;
    const waited = native.pidfdWait(fd).then(() => (settled = true));
    // Two waits on one pidfd are independent (each polls its own duplicate).
    const second = native.pidfdWait(fd);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, "still running");
    closeSync(fd); // the waits hold their own duplicates
    fds.splice(fds.indexOf(fd), 1);
    process.kill(pid, "SIGKILL");
    await Promise.all([waited, second]);
    assert.equal(settled, true);
  });

  test("pidfd errors: no such pid, a fd that is no pidfd, bad arguments", () => {
    const pidMax = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8"));
    assertSystemError(() => native.pidfdOpen(pidMax + 1, 0), "ESRCH", "pidfd_open", `pid ${pidMax + 1}`);
    assertSystemError(() => native.pidfdOpen(process.pid, 0xdead), "EINVAL", "pidfd_open", `pid ${process.pid}`);
    const file = track(openSync("/proc/self/status", "r"));
    assertSystemError(() => native.pidfdSendSignal(file, 0), "EBADF", "pidfd_send_signal", `fd ${file}`);
    assertSystemError(() => native.pidfdExited(987654), "EBADF", "poll", "fd 987654");
    // epoll refuses a regular file: the wait fails at once instead of never settling.
    const regular = track(openSync(fileURLToPath(import.meta.url), "r"));
    assertSystemError(() => native.pidfdWait(regular), "EPERM", "pidfdWait", `fd ${regular}`);
    assertSystemError(() => native.pidfdWait(987654), "EBADF", "fcntl", "fd 987654");
    const loose = native.nativeAddon() as unknown as Record<string, (...args: unknown[]) => unknown>;
    assertArgError(() => loose.pidfdOpen!("1", 0), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.pidfdOpen!(-1, 0), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => loose.pidfdSendSignal!(2 ** 31, 0), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => loose.pidfdWait!(), TypeError, "ERR_INVALID_ARG_COUNT");
    assertArgError(() => loose.setns!(1.5, 0), RangeError, "ERR_OUT_OF_RANGE");
  });

  test("setns moves this thread into another UTS namespace and back", async () => {
    const holder = spawn("unshare", ["--uts", "sh", "-c", "hostname berth-setns-test && echo ready && exec sleep 1000"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(holder);
    await new Promise((resolve, reject) => {
      holder.stdout!.once("data", resolve);
      holder.once("exit", (code) => reject(new Error(`unshare exited with ${code}`)));
    });
    const { CLONE_NEWUTS, CLONE_NEWNET } = native.namespaceTypes;
    const own = track(openSync("/proc/thread-self/ns/uts", "r"));
    const theirs = track(openSync(`/proc/${holder.pid}/ns/uts`, "r"));
    const before = hostname();
    assert.notEqual(before, "berth-setns-test");
    // The wrong type for this namespace fd is refused, and nothing changes.
    assertSystemError(() => native.setns(theirs, CLONE_NEWNET), "EINVAL", "setns", `fd ${theirs}`);
    assert.equal(hostname(), before);
    native.setns(theirs, CLONE_NEWUTS);
    try {
      assert.equal(hostname(), "berth-setns-test");
    } finally {
      native.setns(own, 0);
    }
    assert.equal(hostname(), before);
    const file = track(openSync("/proc/self/status", "r"));
    assertSystemError(() => native.setns(file, 0), "EINVAL", "setns", `fd ${file}`);
  });
});

describe(`spawning children with posix_spawn (${sanitizerChild ? "ASan/UBSan" : "Release"} build)`, () => {
  const openFds = () => readdirSync("/proc/self/fd").length;

  test("runCollected gives the exit code, stdout and stderr apart; a signal death names the signal", async () => {
    const ran = await runCollected("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"]);
    assert.deepEqual(ran, { exit: { code: 3, signal: 0 }, stdout: "out\n", stderr: "err\n" });
    const killed = await runCollected("/bin/sh", ["-c", "kill -KILL $$"]);
    assert.deepEqual(killed.exit, { code: null, signal: osConstants.signals.SIGKILL });
    assert.equal(describeExit(killed.exit), "signal SIGKILL");
    assert.equal(describeExit(ran.exit), "exit status 3");
    // No "/": looked up in PATH, as execFile does.
    assert.deepEqual((await runCollected("true", [])).exit, { code: 0, signal: 0 });
  });

  test("the child has only the fds it was given, default signal dispositions and no blocked signal", async () => {
    // This process holds more fds (the test runner's, files opened here): none is passed on.
    const held = openSync(fileURLToPath(import.meta.url), "r");
    try {
      assert.equal((await runCollected("/bin/ls", ["/proc/self/fd"])).stdout, "0\n1\n2\n3\n", "0-2 and ls's own dir fd");
      assert.equal((await runCollected("/bin/readlink", ["/proc/self/fd/0"])).stdout, "/dev/null\n", "stdin is /dev/null");
    } finally {
      closeSync(held);
    }
    // Node ignores SIGPIPE, and exec keeps an ignored signal ignored unless the child resets it.
    // glibc's posix_spawn leaves its own two (32, 33: thread cancellation and set*id) ignored,
    // which a program installs handlers for when it uses them; no standard signal is.
    const status = (await runCollected("/bin/cat", ["/proc/self/status"])).stdout;
    const ignored = BigInt(`0x${/^SigIgn:\s+([0-9a-f]+)$/m.exec(status)?.[1]}`);
    assert.equal(ignored & ~(3n << 31n), 0n, `ignored signals: ${ignored.toString(16)}`);
    assert.match(status, /^SigBlk:\s+0+$/m);
    const third = spawnChild("/bin/sh", ["-c", "echo three >&3"], { stdio: ["ignore", "ignore", "ignore", "pipe"] });
    assert.equal(third.outputs.length, 4);
    assert.equal(third.outputs[1], undefined);
    const text = await new Promise<string>((resolve, reject) => {
      let out = "";
      third.outputs[3]!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk)).on("end", () => resolve(out)).on("error", reject);
    });
    assert.equal(text, "three\n");
    assert.deepEqual(await third.exited, { code: 0, signal: 0 });
  });

  test("children of child_process and of spawn are each reaped by their own starter", async () => {
    const ours = Array.from({ length: 5 }, (_, i) => runCollected("/bin/sh", ["-c", `exit ${i + 1}`]));
    const theirs = Array.from({ length: 5 }, () => new Promise((resolve) => spawn("/bin/true").once("exit", resolve)));
    assert.deepEqual((await Promise.all(ours)).map((r) => r.exit.code), [1, 2, 3, 4, 5]);
    assert.deepEqual(await Promise.all(theirs), [0, 0, 0, 0, 0]);
  });

  test("an input is the child's stdin, then end of file, whatever its size; a child that does not read it is not an error", async () => {
    assert.equal((await runCollected("/bin/cat", [], { input: "config\n" })).stdout, "config\n");
    // Past the pipe's buffer (64 KiB): written as the child reads, not all at once before it starts.
    const big = Buffer.alloc(1 << 20, "x");
    assert.equal((await runCollected("/bin/sh", ["-c", "wc -c"], { input: big })).stdout.trim(), String(big.length));
    assert.deepEqual((await runCollected("/bin/true", [], { input: big })).exit, { code: 0, signal: 0 });
    const pipes = () => readdirSync("/proc/self/fd").filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith("pipe:");
      } catch {
        return false; // the directory's own fd, closed by now
      }
    }).length;
    const before = pipes();
    await runCollected("/bin/cat", [], { input: "x" });
    assert.equal(pipes(), before, "the input's pipe was closed with the outputs'");
  });

  test("timeoutMs kills a child that runs too long and rejects once it is reaped", async () => {
    await assert.rejects(runCollected("/bin/sleep", ["30"], { timeoutMs: 50 }), (err: Error) => err instanceof ChildTimeoutError && /still running after 50 ms/.test(err.message));
    assert.equal((await runCollected("/bin/echo", ["quick"], { timeoutMs: 10_000 })).stdout, "quick\n");
  });

  test("execChecked gives the output of a success and rejects a failure with what it printed", async () => {
    assert.deepEqual(await execChecked("/bin/sh", ["-c", "echo fine; echo note >&2"]), { stdout: "fine\n", stderr: "note\n" });
    await assert.rejects(execChecked("/bin/sh", ["-c", "echo why >&2; exit 2"]), (err: Error) => {
      assert.ok(err instanceof ChildFailedError);
      assert.equal(err.stderr, "why\n");
      assert.deepEqual(err.exit, { code: 2, signal: 0 });
      assert.equal(err.message, "/bin/sh: exit status 2: why");
      return true;
    });
  });

  test("output beyond maxBuffer kills the child and rejects once it is reaped", async () => {
    await assert.rejects(runCollected("/bin/sh", ["-c", "while :; do echo flood; done"], { maxBuffer: 4096 }), /stdout exceeded 4096 bytes/);
  });

  test("a file that cannot be run throws at spawn and leaves no fd open", () => {
    const before = openFds();
    assertSystemError(() => spawnChild("/nonexistent/berth-tool", [], { stdio: ["ignore", "pipe", "pipe", "pipe"] }), "ENOENT", "posix_spawn", "/nonexistent/berth-tool");
    assertSystemError(() => spawnChild(fileURLToPath(import.meta.url), [], { stdio: ["ignore", "pipe"] }), "EACCES", "posix_spawn", fileURLToPath(import.meta.url));
    assert.equal(openFds(), before, "the pipes made for the child were closed");
  });

  test("bad arguments to spawn and reap are refused", () => {
    const loose = native.nativeAddon() as unknown as Record<string, (...args: unknown[]) => unknown>;
    assertArgError(() => loose.spawn!("/bin/true", [], [], []), TypeError, "ERR_INVALID_ARG_VALUE");
    assertArgError(() => loose.spawn!("/bin/true", ["/bin/true", 7], [], []), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.spawn!("/bin/true", ["/bin/true"], "PATH=/bin", []), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.spawn!("/bin/true", ["/bin/true"], [], new Array(17).fill(-1)), TypeError, "ERR_INVALID_ARG_VALUE");
    assertArgError(() => loose.spawn!("/bin/true", ["/bin/true"], [], [-2]), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => loose.spawn!("/bin/true", ["/bin/true"], [], ["1"]), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.spawn!("/bin/tr\0ue", ["/bin/true"], [], []), TypeError, "ERR_INVALID_ARG_VALUE");
    assertSystemError(() => native.spawn("/bin/true", ["/bin/true"], [], [987654]), "EBADF", "fcntl", "fd 987654");
    assertArgError(() => loose.reap!(0, true), RangeError, "ERR_OUT_OF_RANGE");
    assertSystemError(() => native.reap(process.pid, false), "ECHILD", "waitpid", `pid ${process.pid}`);
  });
});

describe(`running sha256 hashes (${sanitizerChild ? "ASan/UBSan" : "Release"} build)`, { skip: needsRoot }, () => {
  let base = "";
  before(() => {
    base = mkdtempSync(join(process.env.BERTH_NATIVE_TEST_DIR ?? tmpdir(), "berth-native-hash-"));
  });
  after(() => {
    if (base) removeTestDir(base);
  });
  const sha256 = (data: Uint8Array) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

  test("sha256Write appends every chunk to the file and hashes them; sha256Update only hashes; the digest goes on", async () => {
    const hash = native.sha256Create();
    assert.equal(native.sha256Digest(hash), sha256(Buffer.alloc(0)));
    const file = join(base, "appended");
    const fd = openSync(file, "a");
    try {
      // More chunks than one writev takes (IOV_MAX, 1024), of uneven sizes, an empty one among them.
      const chunks = Array.from({ length: 1500 }, (_, i) => randomBytes(i % 7 === 0 ? 0 : (i * 37) % 4096));
      const written = chunks.reduce((n, c) => n + c.length, 0);
      assert.equal(await native.sha256Write(hash, fd, chunks), written);
      assert.equal(native.sha256Digest(hash), sha256(Buffer.concat(chunks)), "asking for the digest does not end the hash");
      const more = [Buffer.from("more bytes"), new Uint8Array([1, 2, 3])];
      assert.equal(await native.sha256Write(hash, fd, more), 13);
      assert.equal(await native.sha256Write(hash, fd, []), 0);
      const onDisk = readFileSync(file);
      assert.deepEqual(onDisk, Buffer.concat([...chunks, ...more]));
      assert.equal(native.sha256Digest(hash), sha256(onDisk));
      // Hashing alone: the file stays as it was.
      const other = native.sha256Create();
      assert.equal(await native.sha256Update(other, [onDisk.subarray(0, 1000), onDisk.subarray(1000)]), onDisk.length);
      assert.equal(native.sha256Digest(other), sha256(onDisk));
      assert.equal(statSync(file).size, onDisk.length);
    } finally {
      closeSync(fd);
    }
  });

  test("a write the filesystem cuts short is hashed as far as it reached the file, and says how far", async () => {
    const small = join(base, "small-tmpfs");
    mkdirSync(small);
    native.mount("tmpfs", small, "tmpfs", 0, "size=64k");
    try {
      const file = join(small, "data");
      const fd = openSync(file, "a");
      try {
        const hash = native.sha256Create();
        const chunks = [randomBytes(40_000), randomBytes(40_000), randomBytes(40_000)];
        await assert.rejects(native.sha256Write(hash, fd, chunks), (error: NodeJS.ErrnoException & { bytesWritten?: number }) => {
          assert.equal(error.code, "ENOSPC");
          assert.equal(error.syscall, "writev");
          assert.ok(typeof error.bytesWritten === "number" && error.bytesWritten > 0 && error.bytesWritten < 120_000, `bytesWritten ${error.bytesWritten}`);
          assert.equal(error.bytesWritten, statSync(file).size);
          return true;
        });
        assert.equal(native.sha256Digest(hash), sha256(readFileSync(file)), "the digest covers exactly what is in the file");
      } finally {
        closeSync(fd);
      }
    } finally {
      native.umount(small, 0);
    }
  });

  test("a write to an fd that cannot take it rejects with the fd's error, and the hash is unchanged", async () => {
    const file = join(base, "read-only");
    writeFileSync(file, "");
    const fd = openSync(file, "r");
    try {
      const hash = native.sha256Create();
      await assert.rejects(native.sha256Write(hash, fd, [Buffer.from("x")]), (error: NodeJS.ErrnoException & { bytesWritten?: number }) => {
        assert.equal(error.code, "EBADF");
        assert.equal(error.path, `fd ${fd}`);
        assert.equal(error.bytesWritten, 0);
        return true;
      });
      assert.equal(native.sha256Digest(hash), sha256(Buffer.alloc(0)));
    } finally {
      closeSync(fd);
    }
  });

  test("bad arguments are refused, and so is a second call while one runs", async () => {
    const loose = native.nativeAddon() as unknown as Record<string, (...args: unknown[]) => unknown>;
    const hash = native.sha256Create();
    assertArgError(() => loose.sha256Digest!({}), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.sha256Update!("sha256", []), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.sha256Update!(hash, Buffer.from("not an array")), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.sha256Update!(hash, ["text"]), TypeError, "ERR_INVALID_ARG_TYPE");
    assertArgError(() => loose.sha256Write!(hash, -1, []), RangeError, "ERR_OUT_OF_RANGE");
    assertArgError(() => loose.sha256Write!(hash, 1), TypeError, "ERR_INVALID_ARG_COUNT");
    const running = native.sha256Update(hash, [randomBytes(4 * 1024 * 1024)]);
    assert.throws(() => native.sha256Update(hash, [Buffer.from("x")]), { code: "ERR_INVALID_STATE" });
    assert.throws(() => native.sha256Digest(hash), { code: "ERR_INVALID_STATE" });
    assert.equal(await running, 4 * 1024 * 1024);
    assert.match(native.sha256Digest(hash), /^sha256:[0-9a-f]{64}$/);
    assert.equal(await native.sha256Update(hash, []), 0, "usable again once the call has settled");
  });
});

// F_GETFD through /proc: fdinfo's flags field carries O_CLOEXEC (02000000).
function fcntlCloexec(fd: number): boolean {
  const flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1];
  return (parseInt(flags ?? "0", 8) & 0o2000000) !== 0;
}

if (!sanitizerChild) {
  test("the same checks pass under ASan and UBSan with no sanitizer report", { skip: needsRoot }, () => {
    rerunUnderSanitizers(fileURLToPath(import.meta.url), 10, 240_000, removeTestDir);
  });
}
