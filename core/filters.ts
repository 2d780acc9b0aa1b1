// containerd's filter language: `fieldpath[op value]`, selectors joined by ',' (AND);
// several filter strings are ORed; no filters (or only empty strings) match all.
// Field names may be quoted ("a.b") so label keys with dots can be named.
import { invalidArgument } from "./errors.ts";

type Operator = "present" | "==" | "!=" | "~=";

interface Selector {
  fieldpath: string[];
  operator: Operator;
  value: string;
  pattern?: RegExp;
}

/** Looks a field path up in the object being filtered; undefined means absent. */
export type FieldAdaptor = (fieldpath: string[]) => string | undefined;

export type Filter = (adaptor: FieldAdaptor) => boolean;

class FilterScanner {
  private pos = 0;
  private readonly text: string;
  constructor(text: string) {
    this.text = text;
  }

  fail(what: string): never {
    throw invalidArgument(`filter parse error: ${what} at position ${this.pos} in "${this.text}"`);
  }

  atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  peek(n = 1): string {
    return this.text.slice(this.pos, this.pos + n);
  }

  skip(n: number): void {
    this.pos += n;
  }

  skipSpaces(): void {
    while (!this.atEnd() && /\s/.test(this.text[this.pos]!)) this.pos++;
  }

  quoted(quote: string): string {
    this.pos++; // opening quote
    let out = "";
    while (!this.atEnd() && this.text[this.pos] !== quote) {
      if (this.text[this.pos] === "\\" && this.pos + 1 < this.text.length) this.pos++;
      out += this.text[this.pos++];
    }
    if (this.atEnd()) this.fail(`unterminated ${quote}`);
    this.pos++; // closing quote
    return out;
  }

  field(): string {
    if (this.peek() === '"') return this.quoted('"');
    const start = this.pos;
    while (!this.atEnd() && /[A-Za-z0-9_\-]/.test(this.text[this.pos]!)) this.pos++;
    if (start === this.pos) this.fail("expected a field name");
    return this.text.slice(start, this.pos);
  }

  value(): string {
    const c = this.peek();
    if (c === '"' || c === "/" || c === "|") return this.quoted(c);
    const start = this.pos;
    while (!this.atEnd() && this.text[this.pos] !== ",") this.pos++;
    const raw = this.text.slice(start, this.pos).trim();
    if (raw === "") this.fail("expected a value");
    return raw;
  }
}

function parseSelector(scanner: FilterScanner): Selector {
  scanner.skipSpaces();
  const fieldpath = [scanner.field()];
  while (scanner.peek() === ".") {
    scanner.skip(1);
    fieldpath.push(scanner.field());
  }
  scanner.skipSpaces();
  const op = scanner.peek(2);
  if (op === "==" || op === "!=" || op === "~=") {
    scanner.skip(2);
    scanner.skipSpaces();
    const value = scanner.value();
    scanner.skipSpaces();
    let pattern: RegExp | undefined;
    if (op === "~=") {
      try {
        pattern = new RegExp(value);
      } catch {
        scanner.fail(`invalid regular expression ${JSON.stringify(value)}`);
      }
    }
    return { fieldpath, operator: op, value, pattern };
  }
  if (!scanner.atEnd() && scanner.peek() !== ",") scanner.fail(`unexpected ${JSON.stringify(scanner.peek())}`);
  return { fieldpath, operator: "present", value: "" };
}

function parseConjunction(text: string): Selector[] {
  const scanner = new FilterScanner(text);
  const selectors = [parseSelector(scanner)];
  while (!scanner.atEnd()) {
    if (scanner.peek() !== ",") scanner.fail(`expected ","`);
    scanner.skip(1);
    selectors.push(parseSelector(scanner));
  }
  return selectors;
}

function matches(selector: Selector, adaptor: FieldAdaptor): boolean {
  const value = adaptor(selector.fieldpath);
  switch (selector.operator) {
    case "present":
      return value !== undefined;
    case "==":
      return value !== undefined && value === selector.value;
    case "!=":
      return value !== selector.value;
    case "~=":
      return selector.pattern!.test(value ?? "");
  }
}

/** Parses filter strings once; bad syntax is an InvalidArgument error naming the filter. */
export function parseFilters(filters: readonly string[]): Filter {
  const alternatives = filters.filter((f) => f.trim() !== "").map(parseConjunction);
  if (alternatives.length === 0) return () => true;
  return (adaptor) => alternatives.some((all) => all.every((s) => matches(s, adaptor)));
}

/** Adaptor for the common shape: top-level string fields plus a labels map. */
export function fieldsAndLabels(fields: Record<string, string | undefined>, labels: Record<string, string>): FieldAdaptor {
  return (path) => {
    if (path[0] === "labels") {
      if (path.length < 2) return undefined;
      return labels[path.slice(1).join(".")];
    }
    return path.length === 1 ? fields[path[0]!] : undefined;
  };
}
