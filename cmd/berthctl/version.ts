// berthctl version: the client's and the server's version, as ctr version prints them.
import type { Command } from "commander";
import { IntrospectionDefinition } from "../../core/gen/containerd/services/introspection/v1/introspection.ts";
import { VersionDefinition } from "../../core/gen/containerd/services/version/v1/version.ts";
import packageJson from "../../package.json" with { type: "json" };
import { writeOut } from "./output.ts";
import type { Session } from "./session.ts";

export const clientVersion = `v${packageJson.version}`;
// The gateway reports the same revision string for the server.
const clientRevision = "berth";

export function registerVersion(program: Command, session: (cmd: Command) => Session): void {
  program
    .command("version")
    .description("print the client and server versions")
    .action(async (_opts: unknown, cmd: Command) => {
      // Like ctr, the client half is printed before the server is asked.
      await writeOut(`Client:\n  Version:  ${clientVersion}\n  Revision: ${clientRevision}\n  Node version: ${process.version}\n\n`);
      const s = session(cmd);
      const version = await s.client(VersionDefinition).version({}, s.call());
      await writeOut(`Server:\n  Version:  ${version.version}\n  Revision: ${version.revision}\n`);
      const server = await s.client(IntrospectionDefinition).server({}, s.call());
      await writeOut(`  UUID: ${server.uuid}\n`);
      if (version.version !== clientVersion) process.stderr.write("WARNING: version mismatch\n");
      if (version.revision !== clientRevision) process.stderr.write("WARNING: revision mismatch\n");
    });
}
