/**
 * Rule objects in a policy image: each rule's JSON, UTF-8, one after another. A restored policy
 * keeps only these bytes (off the JS heap) and parses a rule when a verdict first names it, so a
 * 250,000-rule policy loads without making 250,000 objects.
 */
import type { RuleTable } from './table.js';
import type { Rule } from './types.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** One rule from its image bytes. */
export function ruleFromBytes(b: Uint8Array): Rule {
  return JSON.parse(decoder.decode(b)) as Rule;
}

export class ImageRules {
  private readonly made = new Map<number, Rule>(); // a rule is one object however often it is asked for

  constructor(private readonly text: Uint8Array, private readonly ends: Int32Array) {}

  get length(): number {
    return this.ends.length;
  }

  get(i: number): Rule {
    let r = this.made.get(i);
    if (r === undefined) {
      r = ruleFromBytes(this.text.subarray(i === 0 ? 0 : this.ends[i - 1], this.ends[i]));
      this.made.set(i, r);
    }
    return r;
  }
}

/**
 * The table's rules as image bytes, made a chunk at a time: with `sink`, each full chunk is handed
 * over and not kept (a file writer then never holds the whole text, ~28 MB for 250,000 rules), and
 * `text` is empty; without, `text` is all of it.
 */
export function encodeRules(t: RuleTable, sink?: (chunk: Uint8Array) => void): { text: Uint8Array; ends: Int32Array } {
  const encoder = new TextEncoder();
  const ends = new Int32Array(t.length);
  const chunks: Uint8Array[] = [];
  let chunk = new Uint8Array(1 << 20);
  let n = 0; // in chunk
  let total = 0; // before chunk
  const flush = (): void => {
    if (sink) sink(chunk.subarray(0, n));
    else chunks.push(chunk.slice(0, n));
    total += n;
    n = 0;
  };
  for (let i = 0; i < t.length; i++) {
    const json = JSON.stringify(t.rule(i));
    if (chunk.length - n < json.length * 3) { // UTF-8 takes at most 3 bytes per UTF-16 unit
      flush();
      if (chunk.length < json.length * 3) chunk = new Uint8Array(json.length * 3);
    }
    n += encoder.encodeInto(json, chunk.subarray(n)).written;
    ends[i] = total + n;
  }
  flush();
  const text = new Uint8Array(sink ? 0 : total);
  let at = 0;
  for (const c of chunks) {
    text.set(c, at);
    at += c.length;
  }
  return { text, ends };
}
