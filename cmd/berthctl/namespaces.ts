// berthctl namespaces (ns): ls, create, rm, label — as ctr namespaces.
import type { Command } from "commander";
import { NamespacesDefinition } from "../../core/gen/containerd/services/namespaces/v1/namespace.ts";
import { isNotFound } from "../../core/grpc-status.ts";
import { CommandError, logError, messageOf, writeOut } from "./output.ts";
import { formatLabels, labelArgs, type Session } from "./session.ts";
import { Table } from "./tabwriter.ts";

export function registerNamespaces(program: Command, session: (cmd: Command) => Session): void {
  const ns = program.command("namespaces").aliases(["namespace", "ns"]).description("manage namespaces");

  ns.command("list")
    .alias("ls")
    .description("list namespaces")
    .option("-q, --quiet", "print only the namespace name")
    .argument("[flags...]")
    .action(async (_flags: string[], opts: { quiet?: boolean }, cmd: Command) => {
      const s = session(cmd);
      const { namespaces } = await s.client(NamespacesDefinition).list({ filter: "" }, s.call());
      if (opts.quiet) {
        for (const n of namespaces) await writeOut(`${n.name}\n`);
        return;
      }
      const table = new Table().line("NAME\tLABELS\t");
      for (const n of namespaces) table.line(`${n.name}\t${formatLabels(n.labels)}\t`);
      await writeOut(table.toString());
    });

  ns.command("create")
    .alias("c")
    .description("create a new namespace. it must be unique")
    .argument("[name]")
    .argument("[labels...]", "<key>=<value> labels")
    .action(async (name: string | undefined, labels: string[], _opts: unknown, cmd: Command) => {
      if (!name) throw new CommandError("please specify a namespace");
      const s = session(cmd);
      await s.client(NamespacesDefinition).create({ namespace: { name, labels: labelArgs(labels) } }, s.call());
    });

  ns.command("remove")
    .alias("rm")
    .description("remove one or more namespaces. for now, the namespace must be empty")
    .argument("[names...]")
    .action(async (names: string[], _opts: unknown, cmd: Command) => {
      const s = session(cmd);
      const client = s.client(NamespacesDefinition);
      let firstError: CommandError | undefined;
      for (const name of names) {
        try {
          await client.delete({ name }, s.call());
        } catch (err) {
          // Like ctr: a namespace that is already gone counts as removed.
          if (!isNotFound(err)) {
            firstError ??= new CommandError(`unable to delete ${name}: ${messageOf(err)}`);
            logError(`unable to delete ${name}`, err);
            continue;
          }
        }
        await writeOut(`${name}\n`);
      }
      if (firstError) throw firstError;
    });

  ns.command("label")
    .description("set and clear labels for a namespace. empty value clears the label")
    .argument("[name]")
    .argument("[labels...]", "<key>=<value> labels")
    .action(async (name: string | undefined, args: string[], _opts: unknown, cmd: Command) => {
      if (!name) throw new CommandError("please specify a namespace");
      const labels = labelArgs(args);
      const paths = Object.keys(labels).map((key) => `labels.${key}`);
      if (paths.length === 0) return;
      const s = session(cmd);
      await s.client(NamespacesDefinition).update({ namespace: { name, labels }, updateMask: paths }, s.call());
    });
}
