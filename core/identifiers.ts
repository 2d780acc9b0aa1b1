// containerd's identifier rule (namespaces, container and task ids): alphanumerics
// separated by single '.', '_' or '-', at most 76 characters.
import { invalidArgument } from "./errors.ts";

const identifierPattern = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
const maxIdentifierLength = 76;

export function validateIdentifier(id: string, what = "identifier"): string {
  if (id === "") throw invalidArgument(`${what} must not be empty`);
  if (id.length > maxIdentifierLength) {
    throw invalidArgument(`${what} "${id}" greater than maximum length (${maxIdentifierLength} characters)`);
  }
  if (!identifierPattern.test(id)) {
    throw invalidArgument(`${what} "${id}" must match ${identifierPattern.source}`);
  }
  return id;
}
