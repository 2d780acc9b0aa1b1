// removeRunMountPoints on real directories laid out as an overlay's upper and lower dirs
// after a run (no mount needed: it works on the dirs once the rootfs is unmounted).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Mount } from "../../../core/gen/containerd/types/mount.ts";
import { lsetxattr } from "../../../native/index.ts";
import { removeRunMountPoints } from "./run-mountpoints.ts";

const base = mkdtempSync(join(tmpdir(), "berth-mountpoints-"));
after(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
/** A fresh upper dir over one lower dir, each made by `layout`. */
function overlay(lower: (dir: string) => void, upper: (dir: string) => void): { mounts: Mount[]; upper: string } {
  const dir = join(base, String(n++));
  const [l, u] = [join(dir, "lower"), join(dir, "upper")];
  mkdirSync(l, { recursive: true });
  mkdirSync(u, { recursive: true });
  lower(l);
  upper(u);
  return { upper: u, mounts: [{ type: "overlay", source: "overlay", target: "", options: [`lowerdir=${l}`, `upperdir=${u}`, `workdir=${join(dir, "work")}`] }] };
}

const etcFiles = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/proc", "/dev", "/sys"];

test("runc's empty mount points go, and /etc with them when the step wrote nothing there", () => {
  const o = overlay(
    (l) => mkdirSync(join(l, "etc"), { mode: 0o755 }),
    (u) => {
      mkdirSync(join(u, "etc"), { mode: 0o755 });
      for (const f of ["hosts", "hostname", "resolv.conf"]) writeFileSync(join(u, "etc", f), "");
      for (const d of ["proc", "dev", "sys"]) mkdirSync(join(u, d));
      writeFileSync(join(u, "made-by-step"), "x");
    },
  );
  removeRunMountPoints(o.mounts, etcFiles);
  for (const gone of ["etc", "proc", "dev", "sys"]) assert.ok(!existsSync(join(o.upper, gone)), gone);
  assert.ok(existsSync(join(o.upper, "made-by-step")));
});

test("/etc stays when the step wrote into it, when its mode changed, or when it is opaque", () => {
  const wrote = overlay(
    (l) => mkdirSync(join(l, "etc")),
    (u) => {
      mkdirSync(join(u, "etc"));
      writeFileSync(join(u, "etc", "hosts"), "");
      writeFileSync(join(u, "etc", "mine"), "x");
    },
  );
  removeRunMountPoints(wrote.mounts, etcFiles);
  assert.ok(!existsSync(join(wrote.upper, "etc", "hosts")));
  assert.ok(existsSync(join(wrote.upper, "etc", "mine")));

  const chmodded = overlay(
    (l) => mkdirSync(join(l, "etc"), { mode: 0o755 }),
    (u) => {
      mkdirSync(join(u, "etc"));
      chmodSync(join(u, "etc"), 0o700);
      writeFileSync(join(u, "etc", "hosts"), "");
    },
  );
  removeRunMountPoints(chmodded.mounts, etcFiles);
  assert.ok(existsSync(join(chmodded.upper, "etc")), "a chmod of /etc is the step's change");

  const opaque = overlay(
    (l) => {
      mkdirSync(join(l, "etc"));
      writeFileSync(join(l, "etc", "passwd"), "root");
    },
    (u) => {
      mkdirSync(join(u, "etc"));
      lsetxattr(join(u, "etc"), "trusted.overlay.opaque", Buffer.from("y"));
    },
  );
  removeRunMountPoints(opaque.mounts, etcFiles);
  assert.ok(existsSync(join(opaque.upper, "etc")), "an opaque /etc hides the parent's files: it stays");
});

test("what is not a bare mount point stays: a file with content, a directory with entries, a rootfs that is not an overlay", () => {
  const o = overlay(
    () => undefined,
    (u) => {
      mkdirSync(join(u, "etc"));
      writeFileSync(join(u, "etc", "hosts"), "127.0.0.1 written\n");
      mkdirSync(join(u, "proc", "x"), { recursive: true });
    },
  );
  removeRunMountPoints(o.mounts, etcFiles);
  assert.ok(existsSync(join(o.upper, "etc", "hosts")));
  assert.ok(existsSync(join(o.upper, "proc", "x")));
  const native: Mount[] = [{ type: "bind", source: o.upper, target: "", options: ["rbind"] }];
  writeFileSync(join(o.upper, "etc", "hostname"), "");
  removeRunMountPoints(native, etcFiles);
  assert.ok(existsSync(join(o.upper, "etc", "hostname")), "no upper dir: nothing is removed");
});
