// berthctl content: ls, get, ingest, rm, label — as ctr content.
import type { Command } from "commander";
import { BulkContentDefinition } from "../../core/content-codec.ts";
import { isDigest } from "../../core/digest.ts";
import { millisFromTimestamp } from "../../core/timestamp.ts";
import { readBlob, writeBlob } from "../../core/content-client.ts";
import { isNotFound } from "../../core/grpc-status.ts";
import { CommandError, logError, writeOut } from "./output.ts";
import { formatLabels, labelUpdate, type Session } from "./session.ts";
import { Table } from "./tabwriter.ts";
import { humanDuration, humanSize } from "./units.ts";

/** ctr parses digests client-side and stops at a malformed one with this message. */
function parseDigestArg(arg: string | undefined): string {
  if (!arg || !isDigest(arg)) throw new CommandError("invalid checksum digest format");
  return arg;
}

export function registerContent(program: Command, session: (cmd: Command) => Session): void {
  const content = program.command("content").description("manage content");

  content
    .command("list")
    .alias("ls")
    .description("list all blobs in the store")
    .option("-q, --quiet", "print only the blob digest")
    .argument("[filters...]")
    .action(async (filters: string[], opts: { quiet?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const now = Date.now();
      // ctr's content ls is the one table it pads with tabs.
      const table = new Table("\t").line("DIGEST\tSIZE\tAGE\tLABELS");
      const quiet: string[] = [];
      for await (const batch of s.client(BulkContentDefinition).list({ filters }, s.call())) {
        for (const info of batch.info) {
          if (opts.quiet) {
            quiet.push(`${info.digest}\n`);
            continue;
          }
          const created = millisFromTimestamp(info.createdAt) ?? now;
          table.line(`${info.digest}\t${humanSize(info.size)}\t${humanDuration(now - created)}\t${formatLabels(info.labels) || "-"}`);
        }
      }
      await writeOut(opts.quiet ? quiet.join("") : table.toString());
    });

  content
    .command("get")
    .description("get the data for an object")
    .argument("[digest]")
    .allowExcessArguments() // ctr reads the first digest and ignores the rest
    .action(async (digest: string | undefined, _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      for await (const data of readBlob(s.client(BulkContentDefinition), parseDigestArg(digest), s.call())) await writeOut(data);
    });

  content
    .command("ingest")
    .description("accept content into the store")
    .option("--expected-size <size>", "validate against provided size", "0")
    .option("--expected-digest <digest>", "verify content against expected digest", "")
    .argument("[ref]")
    .action(async (ref: string | undefined, opts: { expectedSize: string; expectedDigest: string }, cmd: Command) => {
      if (opts.expectedDigest !== "" && !isDigest(opts.expectedDigest)) throw new CommandError("invalid checksum digest format");
      if (!/^-?\d+$/.test(opts.expectedSize.trim())) {
        throw new CommandError(`invalid value ${JSON.stringify(opts.expectedSize)} for flag -expected-size: parse error`);
      }
      if (!ref) throw new CommandError("must specify a transaction reference");
      const s = session(cmd);
      // As ctr: resume an interrupted ingest of the ref; a failed one stays for the next try.
      await writeBlob(s.client(BulkContentDefinition), process.stdin, { ref, total: BigInt(opts.expectedSize.trim()), expected: opts.expectedDigest, resume: true }, s.call());
    });

  content
    .command("delete")
    .aliases(["del", "remove", "rm"])
    .description("permanently delete one or more blobs")
    .argument("[digests...]")
    .action(async (digests: string[], _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const client = s.client(BulkContentDefinition);
      let firstError: unknown;
      for (const arg of digests) {
        if (!isDigest(arg)) {
          const err = new CommandError("invalid checksum digest format");
          firstError ??= err;
          logError(`could not delete ${arg}`, err);
          continue;
        }
        try {
          await client.delete({ digest: arg }, s.call());
        } catch (err) {
          // A blob that is already gone is not worth a failure, but ctr prints only
          // the digests it actually deleted.
          if (!isNotFound(err)) {
            firstError ??= err;
            logError(`could not delete ${arg}`, err);
          }
          continue;
        }
        await writeOut(`${arg}\n`);
      }
      if (firstError) throw firstError;
    });

  content
    .command("label")
    .description("add labels to content")
    .argument("[digest]")
    .argument("[labels...]", "<label>=<value> (an empty value removes the label)")
    .action(async (digestArg: string | undefined, args: string[], _opts: unknown, cmd: Command) => {
      const digest = parseDigestArg(digestArg);
      const s = session(cmd);
      const client = s.client(BulkContentDefinition);
      const { labels, paths } = labelUpdate(args);
      // No labels given: show the current ones rather than clear anything.
      const { info } =
        paths.length === 0
          ? await client.info({ digest }, s.call())
          : await client.update({ info: { digest, labels }, updateMask: paths }, s.call());
      await writeOut(`${formatLabels(info?.labels ?? {})}\n`);
    });
}
