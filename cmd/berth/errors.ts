// The ways a berth command fails, each with docker's exit status: a bad command line
// (125 for flags, as docker's flag parser; 1 for argument counts), an error the daemon
// answered with (1; `run` turns it into 125), and any other failure the command reports.

/** A failure with the text to print and the exit status; `prefix` false prints the text alone. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

export class UsageError extends CliError {
  readonly command: string;
  /** Whether the usage line is worth showing (wrong argument count) or just the hint (bad flag). */
  readonly showUsage: boolean;
  constructor(message: string, command: string, argumentCount = false) {
    super(message, argumentCount ? 1 : 125);
    this.command = command;
    this.showUsage = argumentCount;
  }
}

/** An error response: the status and Docker's message. */
export class DaemonError extends CliError {
  readonly status: number;
  constructor(status: number, message: string) {
    super(`Error response from daemon: ${message}`);
    this.status = status;
  }
  /** The daemon's message alone. */
  get daemonMessage(): string {
    return this.message.slice("Error response from daemon: ".length);
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof DaemonError && err.status === 404;
