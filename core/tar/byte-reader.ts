// Pull-style reads of exact byte counts from an async chunk source (a stream, a
// generator), without copying more than a block boundary needs.
import { invalidArgument } from "../errors.ts";

export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** Any chunk source as an async iterator (arrays and sync generators included). */
export function asyncIteratorOf(source: ByteSource): AsyncIterator<Uint8Array> {
  if (Symbol.asyncIterator in source) return source[Symbol.asyncIterator]();
  const sync = source[Symbol.iterator]();
  return {
    next: async () => sync.next(),
    return: async () => sync.return?.() ?? { done: true, value: undefined },
  };
}

export class ByteReader {
  private readonly source: AsyncIterator<Uint8Array>;
  private pending: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(source: ByteSource) {
    this.source = asyncIteratorOf(source);
  }

  private async nextChunk(): Promise<Buffer | null> {
    if (this.ended) return null;
    const next = await this.source.next();
    if (next.done) {
      this.ended = true;
      return null;
    }
    const value = next.value;
    return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }

  private async pull(): Promise<boolean> {
    const chunk = await this.nextChunk();
    if (chunk === null) return false;
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    return true;
  }

  /**
   * Exactly n bytes; null when the source is at its end before the first byte.
   * Ending part-way through is an error naming `what`.
   */
  async readExact(n: number, what: string): Promise<Buffer | null> {
    if (this.pending.length < n) {
      // Gather first, concatenate once: extended headers may span many small chunks.
      const parts = [this.pending];
      let have = this.pending.length;
      while (have < n) {
        const chunk = await this.nextChunk();
        if (chunk === null) {
          if (have === 0) return null;
          throw invalidArgument(`tar: unexpected end of archive in a ${what} (truncated layer)`);
        }
        parts.push(chunk);
        have += chunk.length;
      }
      this.pending = Buffer.concat(parts, have);
    }
    const out = this.pending.subarray(0, n);
    this.pending = this.pending.subarray(n);
    return out;
  }

  /** Up to `max` bytes (at least one); null at the end. */
  async readSome(max: number): Promise<Buffer | null> {
    if (this.pending.length === 0 && !(await this.pull())) return null;
    const out = this.pending.subarray(0, Math.min(max, this.pending.length));
    this.pending = this.pending.subarray(out.length);
    return out;
  }

  /** Skips n bytes; false when the source ended first. */
  async skip(n: number): Promise<boolean> {
    while (n > 0) {
      const chunk = await this.readSome(n);
      if (chunk === null) return false;
      n -= chunk.length;
    }
    return true;
  }

  /** Stops the source early (e.g. after an error), letting it release what it holds. */
  async close(): Promise<void> {
    this.pending = Buffer.alloc(0);
    if (!this.ended) {
      this.ended = true;
      await this.source.return?.();
    }
  }

  /** Reads and discards everything left; returns how many bytes that was. */
  async drain(): Promise<number> {
    let total = this.pending.length;
    this.pending = Buffer.alloc(0);
    while (await this.pull()) {
      total += this.pending.length;
      this.pending = Buffer.alloc(0);
    }
    return total;
  }
}
