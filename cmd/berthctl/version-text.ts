// What `berthctl version` prints, as ctr version lays it out; shared by the command
// and the fast path (fast-path.ts), so both print the same bytes.
import packageJson from "../../package.json" with { type: "json" };

export const clientVersion = `v${packageJson.version}`;
// The gateway reports the same revision string for the server.
export const clientRevision = "berth";

export const clientSection = () => `Client:\n  Version:  ${clientVersion}\n  Revision: ${clientRevision}\n  Node version: ${process.version}\n\n`;

export const serverSection = (server: { version: string; revision: string }) => `Server:\n  Version:  ${server.version}\n  Revision: ${server.revision}\n`;

export const uuidLine = (uuid: string) => `  UUID: ${uuid}\n`;

/** The warnings ctr prints on stderr when client and server differ. */
export function mismatchWarnings(server: { version: string; revision: string }): string {
  return (server.version !== clientVersion ? "WARNING: version mismatch\n" : "") + (server.revision !== clientRevision ? "WARNING: revision mismatch\n" : "");
}
