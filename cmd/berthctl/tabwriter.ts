// Go's text/tabwriter, as ctr configures it (minwidth 1, tabwidth 8, padding 1, no
// flags), so berthctl's tables line up byte for byte with ctr's. Cells are
// tab-terminated; the text after a line's last tab is not part of any column. A line
// without tabs ends a block: the lines after it are aligned on their own.

const tabWidth = 8;

/** Go tabwriter's minwidth and padding; ctr uses 1 and 1 for most tables, 4 and 4 for tasks and containers. */
export interface TableLayout {
  minWidth: number;
  padding: number;
}

const ctrDefault: TableLayout = { minWidth: 1, padding: 1 };

export type PadChar = " " | "\t";

const runeLength = (text: string) => [...text].length;

function formatBlock(lines: string[][], pad: PadChar, { minWidth, padding }: TableLayout): string {
  let out = "";
  const widths: number[] = [];

  const padCell = (textWidth: number, cellWidth: number) => {
    if (pad === "\t") {
      const rounded = Math.ceil(cellWidth / tabWidth) * tabWidth;
      out += "\t".repeat(Math.ceil((rounded - textWidth) / tabWidth));
    } else {
      out += " ".repeat(cellWidth - textWidth);
    }
  };

  const writeLines = (line0: number, line1: number) => {
    for (let i = line0; i < line1; i++) {
      const cells = lines[i]!;
      cells.forEach((cell, j) => {
        out += cell;
        if (j < widths.length) padCell(runeLength(cell), widths[j]!);
      });
      if (i + 1 < lines.length) out += "\n";
    }
  };

  const format = (line0: number, line1: number) => {
    const column = widths.length;
    for (let i = line0; i < line1; i++) {
      if (column >= lines[i]!.length - 1) continue;
      writeLines(line0, i);
      line0 = i;
      let width = minWidth;
      for (; i < line1; i++) {
        const cells = lines[i]!;
        if (column >= cells.length - 1) break;
        width = Math.max(width, runeLength(cells[column]!) + padding);
      }
      widths.push(width);
      format(line0, i);
      widths.pop();
      line0 = i;
    }
    writeLines(line0, line1);
  };

  format(0, lines.length);
  return out;
}

/** Formats text the way a flushed Go tabwriter would print it. */
function tabwrite(text: string, pad: PadChar = " ", layout: TableLayout = ctrDefault): string {
  const lines = text.split("\n").map((line) => line.split("\t"));
  let out = "";
  let start = 0;
  // Go flushes after every newline-terminated line that holds a single cell.
  for (let i = 0; i < lines.length - 1; i++) {
    if (lines[i]!.length === 1) {
      out += formatBlock([...lines.slice(start, i + 1), [""]], pad, layout);
      start = i + 1;
    }
  }
  return out + formatBlock(lines.slice(start), pad, layout);
}

/** Collects rows and prints them as one table. */
export class Table {
  private text = "";
  private readonly pad: PadChar;
  private readonly layout: TableLayout;

  constructor(pad: PadChar = " ", layout: TableLayout = ctrDefault) {
    this.pad = pad;
    this.layout = layout;
  }

  /** Appends one line of text as given (cells separated and terminated by tabs). */
  line(text: string): this {
    this.text += `${text}\n`;
    return this;
  }

  toString(): string {
    return tabwrite(this.text, this.pad, this.layout);
  }
}
