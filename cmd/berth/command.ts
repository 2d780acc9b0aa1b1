// What a berth command is: its spec (usage, flags) and what it does with a context that
// holds the parsed command line and a lazily made engine client.
import type { CommandSpec, Flags } from "./args.ts";
import { EngineClient } from "./client.ts";
import { chooseHost, type HostChoice } from "./host.ts";

export interface GlobalOptions {
  host?: string;
  context?: string;
  /** The docker config directory (login/logout), as docker's --config. */
  config?: string;
  debug: boolean;
}

export class Context {
  readonly name: string;
  readonly args: string[];
  readonly flags: Flags;
  readonly globals: GlobalOptions;
  private engine: EngineClient | undefined;

  constructor(name: string, args: string[], flags: Flags, globals: GlobalOptions) {
    this.name = name;
    this.args = args;
    this.flags = flags;
    this.globals = globals;
  }

  get host(): HostChoice {
    return this.client.host;
  }

  get client(): EngineClient {
    this.engine ??= new EngineClient(chooseHost(this.globals.host, this.globals.context, process.env));
    return this.engine;
  }
}

export interface Command {
  spec: CommandSpec;
  /** Resolves to the exit status (0 when nothing is returned). */
  run(ctx: Context): Promise<number | void>;
}

export type CommandModule = Record<string, Command>;

export const out = (text: string): void => {
  process.stdout.write(text);
};
export const err = (text: string): void => {
  process.stderr.write(text);
};
