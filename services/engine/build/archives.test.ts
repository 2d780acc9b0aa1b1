// ADD's archive detection and unpacking, against archives made by the real tar, gzip,
// bzip2, xz and zstd: what unpacks, what is copied as a file, what fails and how.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArchiveError, archiveFormat, MissingDecompressor, unpackArchive } from "./archives.ts";

let work: string;

function sh(command: string, args: string[], stdout?: string): void {
  const r = spawnSync(command, args, { cwd: work, maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${command} ${args.join(" ")}: ${String(r.stderr)}`);
  if (stdout) writeFileSync(join(work, stdout), r.stdout);
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "berth-build-archives-"));
  mkdirSync(join(work, "src", "dir"), { recursive: true });
  writeFileSync(join(work, "src", "dir", "hello.txt"), "hello\n");
  // Incompressible, so a truncated compressed copy still decompresses its first blocks.
  writeFileSync(join(work, "src", "noise.bin"), randomBytes(256 << 10));
  sh("tar", ["-c", "-f", "plain.tar", "-C", "src", "dir", "noise.bin"]);
  sh("gzip", ["-k", "-c", "plain.tar"], "t.tar.gz");
  sh("bzip2", ["-k", "-c", "plain.tar"], "t.tar.bz2");
  sh("xz", ["-k", "-c", "plain.tar"], "t.tar.xz");
  sh("zstd", ["-q", "-c", "plain.tar"], "t.tar.zst");
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("plain, gzip, bzip2, xz and zstd tars are detected and unpack", async () => {
  const cases: [string, string][] = [["plain.tar", "none"], ["t.tar.gz", "gzip"], ["t.tar.bz2", "bzip2"], ["t.tar.xz", "xz"], ["t.tar.zst", "zstd"]];
  for (const [name, format] of cases) {
    assert.equal(await archiveFormat(join(work, name)), format, name);
    const dest = join(work, `out-${name}`);
    mkdirSync(dest);
    await unpackArchive(join(work, name), format as "none", dest);
    assert.equal(readFileSync(join(dest, "dir", "hello.txt"), "utf8"), "hello\n", name);
    assert.deepEqual(readFileSync(join(dest, "noise.bin")), readFileSync(join(work, "src", "noise.bin")), name);
  }
});

test("files that are not tars, compressed or not, are copied as they are (Docker's test: a tar header after decompressing)", async () => {
  writeFileSync(join(work, "text.txt"), "just text, long enough to fill a block? ".repeat(20));
  sh("gzip", ["-k", "-c", "text.txt"], "text.txt.gz");
  sh("xz", ["-k", "-c", "text.txt"], "text.txt.xz");
  writeFileSync(join(work, "zeros.tar"), Buffer.alloc(10240));
  writeFileSync(join(work, "fake.xz"), Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.from("not xz at all")]));
  for (const name of ["text.txt", "text.txt.gz", "text.txt.xz", "zeros.tar", "fake.xz"]) assert.equal(await archiveFormat(join(work, name)), undefined, name);
});

test("an archive whose compressed data breaks after its start fails with the decompressor's own message", async () => {
  const whole = readFileSync(join(work, "t.tar.xz"));
  writeFileSync(join(work, "cut.tar.xz"), whole.subarray(0, Math.floor(whole.length * 0.6)));
  assert.equal(await archiveFormat(join(work, "cut.tar.xz")), "xz");
  const dest = join(work, "out-cut");
  mkdirSync(dest);
  await assert.rejects(unpackArchive(join(work, "cut.tar.xz"), "xz", dest), (err: Error) => err instanceof ArchiveError && /^xz could not decompress the archive \(exit 1\): xz: \(stdin\): Unexpected end of input/.test(err.message));
  const gz = readFileSync(join(work, "t.tar.gz"));
  writeFileSync(join(work, "cut.tar.gz"), gz.subarray(0, Math.floor(gz.length * 0.6)));
  const destGz = join(work, "out-cut-gz");
  mkdirSync(destGz);
  await assert.rejects(unpackArchive(join(work, "cut.tar.gz"), "gzip", destGz), /unexpected end|truncated/i);
});

test("without the decompressor installed, an xz file is an error naming the tool, never copied as if it were no archive", async () => {
  const path = process.env.PATH;
  process.env.PATH = join(work, "no-tools-here");
  try {
    await assert.rejects(archiveFormat(join(work, "t.tar.xz")), (err: Error) => err instanceof MissingDecompressor && /^cannot run xz to decompress the archive \(is it installed\?/.test(err.message));
    // Formats Node decompresses itself need no tool.
    assert.equal(await archiveFormat(join(work, "t.tar.gz")), "gzip");
  } finally {
    process.env.PATH = path;
  }
});
