// berthctl version: the client's and the server's version, as ctr version prints them.
import type { Command } from "commander";
import { IntrospectionDefinition } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../../core/gen/containerd/services/version/v1/version.ts";
import { writeOut } from "./output.ts";
import type { Session } from "./session.ts";
import { clientSection, mismatchWarnings, serverSection, uuidLine } from "./version-text.ts";

export { clientVersion } from "./version-text.ts";

export function registerVersion(program: Command, session: (cmd: Command) => Session): void {
  program
    .command("version")
    .description("print the client and server versions")
    .action(async (_opts: unknown, cmd: Command) => {
      // Like ctr, the client half is printed before the server is asked.
      await writeOut(clientSection());
      const s = session(cmd);
      const version = await s.client(VersionDefinition).version({}, s.call());
      await writeOut(serverSection(version));
      const server = await s.client(IntrospectionDefinition).server({}, s.call());
      await writeOut(uuidLine(server.uuid));
      process.stderr.write(mismatchWarnings(version));
    });
}
