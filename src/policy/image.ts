/**
 * Rule objects in a policy image: each rule's JSON, UTF-8, one after another. A restored policy
 * keeps only these bytes (off the JS heap) and parses a rule when a verdict first names it, so a
 * 250,000-rule policy loads without making 250,000 objects.
 */
import type { Rule, RuleSource } from './types.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/** One rule from its image bytes. */
export function ruleFromBytes(b: Uint8Array): Rule {
  return JSON.parse(decoder.decode(b)) as Rule;
}

export class ImageRules {
  private readonly made = new Map<number, Rule>(); // a rule is one object however often it is asked for

  constructor(private readonly bytes: Uint8Array, private readonly ends: Int32Array) {}

  get length(): number {
    return this.ends.length;
  }

  get(i: number): Rule {
    let r = this.made.get(i);
    if (r === undefined) {
      r = ruleFromBytes(this.bytes.subarray(i === 0 ? 0 : this.ends[i - 1], this.ends[i]));
      this.made.set(i, r);
    }
    return r;
  }
}

/**
 * Rules as image bytes, a piece at a time: a file writer then never holds the whole text (~28 MB for
 * 250,000 rules) and can let other work run between pieces. `ends` is complete once `done`.
 */
export class RuleEncoder {
  readonly ends: Int32Array;
  private readonly encoder = new TextEncoder();
  private next = 0;
  private total = 0;

  constructor(private readonly rules: RuleSource) {
    this.ends = new Int32Array(rules.length);
  }

  get done(): boolean {
    return this.next === this.rules.length;
  }

  /** The bytes of up to `count` more rules. */
  piece(count: number): Uint8Array {
    const end = Math.min(this.rules.length, this.next + count);
    let out = new Uint8Array(64 * 1024);
    let n = 0;
    for (; this.next < end; this.next++) {
      const t = this.rules.text?.(this.next) ?? null;
      const bytes = t instanceof Uint8Array ? t : null;
      const json = bytes ? '' : typeof t === 'string' ? t : JSON.stringify(this.rules.get(this.next));
      const most = bytes ? bytes.length : json.length * 3; // UTF-8 takes at most 3 bytes per UTF-16 unit
      if (out.length - n < most) {
        const bigger = new Uint8Array(Math.max(out.length * 2, n + most));
        bigger.set(out.subarray(0, n));
        out = bigger;
      }
      if (bytes) {
        out.set(bytes, n);
        n += bytes.length;
      } else n += this.encoder.encodeInto(json, out.subarray(n)).written;
      this.ends[this.next] = this.total + n;
    }
    this.total += n;
    return out.subarray(0, n);
  }
}

/** All of the rules' bytes at once. */
export function encodeRules(rules: RuleSource): { text: Uint8Array; ends: Int32Array } {
  const e = new RuleEncoder(rules);
  const text = e.piece(rules.length);
  return { text, ends: e.ends };
}
