// Heredocs at build time, as BuildKit runs them (Docker's classic builder has none):
// `RUN <<EOF` alone runs the body as the shell's script (a body starting with `#!` runs as
// an executable file of its own); a RUN with a heredoc inside a longer command gets the
// bodies appended, so the image's shell reads them as it reads any heredoc; `COPY <<EOF
// /dest` copies a file named after the delimiter holding the body, variables expanded
// unless the delimiter was quoted.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { badRequest } from "../http.ts";
import { expandText, type Heredoc, type Instruction } from "./dockerfile.ts";

/** `<<-`: the body's lines without their leading tabs. */
export function chompedBody(heredoc: Heredoc): string {
  return heredoc.chomp ? heredoc.content.replace(/^\t+/gm, "") : heredoc.content;
}

/** What a RUN with heredocs executes. */
export interface HeredocRun {
  /** The command (the image's shell prepended unless a script runs by its own `#!`). */
  command: string[];
  /** A `#!` script to bind-mount read-only at `path` in the container. */
  script?: { path: string; content: string };
  /** For the history and the cache key: what runs, bodies included. */
  createdBy: string;
}

export function heredocRun(step: Instruction, shell: string[]): HeredocRun {
  const heredocs = step.heredocs!;
  const only = heredocs.length === 1 && step.args.trim() === heredocs[0]!.marker;
  if (!only) {
    const full = `${step.args}${heredocs.map((h) => `\n${h.content}${h.name}`).join("")}`;
    const command = [...shell, full];
    return { command, createdBy: command.join(" ") };
  }
  const body = chompedBody(heredocs[0]!);
  if (body.startsWith("#!")) {
    const path = `/dev/pipes/${heredocs[0]!.name}`;
    return { command: [path], script: { path, content: body }, createdBy: `${path} <<${heredocs[0]!.name}\n${body}${heredocs[0]!.name}` };
  }
  const command = [...shell, body];
  return { command, createdBy: command.join(" ") };
}

/** A `#!` body as an executable host file (in a temp dir of its own) that the RUN container bind-mounts. */
export function writeScript(content: string): { path: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "berth-build-script-"));
  try {
    const path = join(dir, "script");
    writeFileSync(path, content, { mode: 0o755 });
    chmodSync(path, 0o755);
    return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A body's variables expanded as BuildKit does for COPY: `$V`/`${V…}` substituted, `\$` a literal `$`, quotes kept. */
export function expandBody(body: string, vars: ReadonlyMap<string, string>, escape: string): string {
  const escaped = escape.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
  const reference = new RegExp(`${escaped}\\$|\\$(?:[A-Za-z_][A-Za-z0-9_]*|\\{[^}]*\\})`, "g");
  return body.replace(reference, (ref) => (ref.startsWith("$") ? expandText(ref, vars, escape) : "$"));
}

/** COPY/ADD heredoc sources written as files (mode 0644, named after their delimiters) in a temp dir; `remove` deletes it. */
export function heredocSources(step: Instruction, vars: ReadonlyMap<string, string>, escape: string): { dir: string; names: string[]; remove(): void } {
  const heredocs = step.heredocs ?? [];
  const seen = new Set<string>();
  for (const h of heredocs) {
    if (h.name.includes("/") || h.name === "." || h.name === "..") throw badRequest(`${step.keyword} <<${h.name}: a heredoc's delimiter names the file it becomes, so it cannot be a path`);
    if (seen.has(h.name)) throw badRequest(`${step.keyword}: two heredocs named ${h.name} would be the same file`);
    seen.add(h.name);
  }
  const dir = mkdtempSync(join(tmpdir(), "berth-build-heredoc-"));
  try {
    for (const h of heredocs) {
      const body = chompedBody(h);
      const path = join(dir, h.name);
      writeFileSync(path, h.expand ? expandBody(body, vars, escape) : body);
      chmodSync(path, 0o644);
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, names: heredocs.map((h) => h.name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Whether a COPY/ADD argument word is one of the step's heredoc markers (quotes already removed). */
export function isHeredocWord(word: string, step: Instruction): boolean {
  return (step.heredocs ?? []).some((h) => new RegExp(`^\\d*<<-?${h.name.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")}$`).test(word));
}
