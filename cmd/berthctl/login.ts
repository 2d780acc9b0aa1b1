// berthctl login / logout, as docker's: credentials are checked against the registry
// (GET /v2/ and its 401 handshake) from here, not by the daemon, then filed in the
// caller's Docker config.json (or its credential helper), where `pull` and `push` find
// them. The daemon never reads that file: the CLI sends what it found with each request.
import { createInterface } from "node:readline";
import type { Command } from "commander";
import type { Credentials } from "../../core/registry/credentials.ts";
import { dockerHub } from "../../core/registry/reference.ts";
import { CommandError, writeOut } from "./output.ts";

/** How docker names Docker Hub in messages and config keys. */
const dockerHubAddress = "https://index.docker.io/v1/";

/**
 * The registry a login argument names: "host:port", "https://host:port/v2/",
 * "docker.io", "index.docker.io", "https://index.docker.io/v1/" (Docker Hub).
 */
export function registryOfServer(server: string | undefined): string {
  if (server === undefined || server === "") return dockerHub;
  const host = server.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").split("/")[0]!.toLowerCase();
  if (host === "") throw new CommandError(`invalid registry address ${JSON.stringify(server)}: expected host[:port]`);
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:\d{1,5})?$/.test(host)) {
    throw new CommandError(`invalid registry address ${JSON.stringify(server)}: expected host[:port]`);
  }
  return host === "index.docker.io" || host === "registry-1.docker.io" ? dockerHub : host;
}

const displayName = (registry: string) => (registry === dockerHub ? dockerHubAddress : registry);

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  return text;
}

/** One line from the terminal; with `secret`, what is typed is not echoed. */
async function prompt(question: string, secret: boolean): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  if (secret) {
    // readline echoes through _writeToOutput; swallowing it keeps the password off the screen.
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = () => {};
    process.stderr.write(question);
  }
  try {
    return await new Promise<string>((resolve) => rl.question(secret ? "" : question, resolve));
  } finally {
    rl.close();
    if (secret) process.stderr.write("\n");
  }
}

interface LoginFlags {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  plainHttp?: boolean;
  skipVerify?: boolean;
}

async function credentialsFrom(flags: LoginFlags, registry: string): Promise<Credentials> {
  if (flags.password !== undefined && flags.passwordStdin) throw new CommandError("--password and --password-stdin are mutually exclusive");
  let { username, password } = flags;
  if (flags.passwordStdin) {
    if (!username) throw new CommandError("must provide --username with --password-stdin");
    // docker strips the trailing newline(s) `echo` adds, nothing else.
    password = (await readAll(process.stdin)).replace(/[\r\n]+$/, "");
  } else if (password !== undefined) {
    process.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n");
  }
  const interactive = Boolean(process.stdin.isTTY);
  if (!username) {
    if (!interactive) throw new CommandError("cannot perform an interactive login from a non TTY device: use --username and --password-stdin");
    const { getCredentials } = await import("../../core/registry/credentials.ts");
    const known = await getCredentials(registry).catch(() => undefined);
    username = (await prompt(`Username${known?.username ? ` (${known.username})` : ""}: `, false)).trim() || known?.username;
  }
  if (!username) throw new CommandError("username is empty");
  if (password === undefined) {
    if (!interactive) throw new CommandError("cannot read a password from a non TTY device: use --password-stdin");
    password = await prompt("Password: ", true);
  }
  if (password === "") throw new CommandError("password is empty");
  return { username, password };
}

export function registerLogin(program: Command): void {
  program
    .command("login")
    .description("log in to a registry: the credentials are checked, then stored in the Docker config.json (or its credential helper)")
    .option("-u, --username <name>", "user name")
    .option("-p, --password <password>", "password (insecure: prefer --password-stdin)")
    .option("--password-stdin", "take the password from stdin")
    .option("--plain-http", "allow connections using plain HTTP")
    .option("-k, --skip-verify", "skip SSL certificate validation")
    .argument("[server]", "registry host[:port] (default: Docker Hub)")
    .action(async (server: string | undefined, flags: LoginFlags) => {
      const registry = registryOfServer(server);
      const credentials = await credentialsFrom(flags, registry);
      // Loaded here: the registry client (undici) is no cost to every other command.
      const { login } = await import("../../core/registry/login.ts");
      const { defaultDockerConfigPath } = await import("../../core/registry/credentials.ts");
      const configPath = defaultDockerConfigPath();
      await login(registry, credentials, {
        configPath,
        ...(flags.skipVerify ? { insecure: [registry] } : {}),
        ...(flags.plainHttp ? { plainHttp: [registry] } : {}),
      });
      await writeOut("Login Succeeded\n");
    });

  program
    .command("logout")
    .description("remove a registry's credentials from the Docker config.json (or its credential helper)")
    .argument("[server]", "registry host[:port] (default: Docker Hub)")
    .action(async (server: string | undefined) => {
      const registry = registryOfServer(server);
      const { logout } = await import("../../core/registry/login.ts");
      const { defaultDockerConfigPath } = await import("../../core/registry/credentials.ts");
      const removed = await logout(registry, { configPath: defaultDockerConfigPath() });
      await writeOut(removed ? `Removing login credentials for ${displayName(registry)}\n` : `Not logged in to ${displayName(registry)}\n`);
    });
}
