// Unit tests of the pure parts of docker cp and commit: Go FileMode bits, the archive's
// base name, --change instructions, commit names; and exec's start-failure exit codes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EngineError } from "../http.ts";
import { startFailureExitCode } from "../exec/execs.ts";
import { applyChange, type RunConfig } from "./commit-changes.ts";
import { commitName } from "./commit.ts";
import { archiveBaseName, goFileMode } from "./copy.ts";

test("Go FileMode bits: type bits above the permissions, as Docker's stat header carries them", () => {
  assert.equal(goFileMode({ mode: 0o040755 }), 2147484141);
  assert.equal(goFileMode({ mode: 0o100644 }), 420);
  assert.equal(goFileMode({ mode: 0o120777 }), 2 ** 27 + 0o777);
  assert.equal(goFileMode({ mode: 0o104755 }), 2 ** 23 + 0o755, "setuid");
  assert.equal(goFileMode({ mode: 0o041777 }), 2 ** 31 + 2 ** 20 + 0o777, "sticky directory");
  assert.equal(goFileMode({ mode: 0o020666 }), 2 ** 26 + 2 ** 21 + 0o666, "character device");
  assert.equal(goFileMode({ mode: 0o010600 }), 2 ** 25 + 0o600, "fifo");
});

test("the archive's base name is the given path's; dir/. means the contents", () => {
  assert.equal(archiveBaseName("/etc"), "etc");
  assert.equal(archiveBaseName("/etc/"), "etc");
  assert.equal(archiveBaseName("/etc/."), ".");
  assert.equal(archiveBaseName("/bin/sh"), "sh");
  assert.equal(archiveBaseName("/"), ".");
});

const changed = (...lines: string[]) => {
  const config: RunConfig = { Env: ["PATH=/bin", "A=1"], Cmd: ["sh"], WorkingDir: "/srv" };
  for (const line of lines) applyChange(config, line);
  return config;
};

test("--change instructions: exec and shell forms, env and label pairs, ports, volumes, workdir", () => {
  assert.deepEqual(changed('CMD ["cat", "/x"]').Cmd, ["cat", "/x"]);
  assert.deepEqual(changed("CMD echo hi").Cmd, ["/bin/sh", "-c", "echo hi"]);
  assert.deepEqual(changed("ENTRYPOINT [\"/bin/app\"]").Entrypoint, ["/bin/app"]);
  assert.deepEqual(changed("ENV A=2 B=\"two words\"").Env, ["PATH=/bin", "A=2", "B=two words"]);
  assert.deepEqual(changed("ENV C three words here").Env, ["PATH=/bin", "A=1", "C=three words here"]);
  assert.deepEqual(changed('LABEL a=1 "b c"=2').Labels, { a: "1", "b c": "2" });
  assert.deepEqual(changed("EXPOSE 80 53/UDP").ExposedPorts, { "80/tcp": {}, "53/udp": {} });
  assert.deepEqual(changed('VOLUME ["/data", "/logs"]').Volumes, { "/data": {}, "/logs": {} });
  assert.deepEqual(changed("VOLUME /a /b").Volumes, { "/a": {}, "/b": {} });
  assert.equal(changed("WORKDIR sub").WorkingDir, "/srv/sub");
  assert.equal(changed("WORKDIR /abs").WorkingDir, "/abs");
  assert.equal(changed("user nobody").User, "nobody", "instructions are case-insensitive");
  assert.equal(changed("STOPSIGNAL SIGINT").StopSignal, "SIGINT");
});

test("--change refuses what a commit cannot apply, naming the problem", () => {
  const refused = (line: string, message: RegExp) =>
    assert.throws(
      () => changed(line),
      (err: unknown) => err instanceof EngineError && err.status === 400 && message.test(err.message),
    );
  refused("RUN rm -rf /", /RUN is not a valid change command/);
  refused("COPY a b", /COPY is not a valid change command/);
  refused("CMD", /CMD requires at least one argument/);
  refused("ENV", /ENV requires at least one argument/);
  refused("ENV LONELY", /a value is required/);
  refused('ENV A="unterminated', /unterminated quote/);
  refused("EXPOSE eighty", /invalid port "eighty"/);
  refused("", /empty --change instruction/);
});

test("commit names: normalized, a tag without a repository refused, no repository means untagged", () => {
  assert.equal(commitName("mine", "v1")("sha256:x"), "docker.io/library/mine:v1");
  assert.equal(commitName("127.0.0.1:5000/a/b", "")("sha256:x"), "127.0.0.1:5000/a/b:latest");
  assert.equal(commitName("", "")("sha256:abc"), "moby-dangling@sha256:abc");
  assert.throws(() => commitName("", "v1"), /tag is not allowed without a repository name/);
  assert.throws(() => commitName("Upper", "v1"), /invalid reference format/);
});

test("an exec that cannot start: 127 when its command is missing, 126 otherwise", () => {
  assert.equal(startFailureExitCode("nosuch", 'exec: "nosuch": executable file not found in $PATH'), 127);
  assert.equal(startFailureExitCode("/bin/gone", "exec: /bin/gone: no such file or directory"), 127);
  assert.equal(startFailureExitCode("/etc/passwd", 'exec: "/etc/passwd": permission denied'), 126);
  assert.equal(startFailureExitCode("ls", 'chdir to cwd ("/nodir") set in config.json failed: no such file or directory'), 126);
});
