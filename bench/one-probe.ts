/**
 * A yardstick for decide()'s figures: a stand-in that implements no policy and does per flow about the
 * least an index does on a flow it has not seen: read the flow's strings (path, first host name, IP)
 * into one hash, probe one slot of a table the size of the pair table (a catalog's rules cannot all sit
 * in cache), read the rule record the slot names, and, for each flow that decide() found a rule for,
 * return a rule's verdict object (made on its first use, as RuleTable does: decide() returns one naming
 * the rule); for the others one shared verdict, as the mode's. Measured in the same process on the same
 * flows, it shows what this machine's memory allows a one-probe index at that moment, so that a figure
 * can be told from the machine's drift. Not a strict bound: decide()'s memos skip reading strings they
 * have seen, and a catalog of few applications keeps decide()'s first lookups in cache.
 */
import { HASH_SEED, mix, step } from '../src/policy/bytedict.js';
import { verdictFor } from '../src/policy/rules.js';
import type { Flow, Rule, Verdict } from '../src/policy/index.js';
import { prng } from './gen.js';

class OneProbe {
  private readonly slots: Int32Array;
  private readonly mask: number;
  private readonly info: Int32Array;
  private readonly verdicts: (Verdict | undefined)[];

  constructor(private readonly rules: readonly Rule[]) {
    let cap = 16;
    while (cap < rules.length * 2) cap *= 2; // as PairTable: four ints a slot, at most half full
    this.slots = new Int32Array(cap * 4);
    this.mask = cap - 1;
    const r = prng(7);
    for (let i = 0; i < cap; i++) this.slots[4 * i + 3] = r(rules.length);
    this.info = new Int32Array(rules.length * 2).fill(0xffff << 16); // ports 0-65535: every record applies
    this.verdicts = new Array<Verdict | undefined>(rules.length).fill(undefined);
  }

  /** `hit`: decide() found a rule for this flow. */
  decide(f: Flow, hit: boolean): Verdict {
    let h = hash(HASH_SEED, f.app.path);
    if (f.remote.hostnames.length > 0) h = hash(h, f.remote.hostnames[0]!);
    h = hash(h, f.remote.ip);
    const r = this.slots[4 * (mix(h) & this.mask) + 3]!;
    if (!hit || f.port > this.info[2 * r]! >>> 16) return NO_RULE;
    return this.verdicts[r] ?? (this.verdicts[r] = verdictFor(this.rules[r]!, 'path'));
  }
}

const NO_RULE: Verdict = Object.freeze({ action: 'allow', level: 'default', reason: 'no rule' });

/** The index's own hash (bytedict.ts) carried over `s`, as decide() hashes a flow's strings. */
function hash(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = step(h, s.charCodeAt(i));
  return h;
}

/**
 * The stand-in's decisions/s on `flows` (`hits[i]`: decide() found a rule for flows[i]): the median of
 * passes over them for `seconds`, after one untimed pass.
 */
export function oneProbe(rules: readonly Rule[], flows: readonly Flow[], hit: Uint8Array, seconds: number): number {
  const p = new OneProbe(rules);
  let hits = 0;
  for (let i = 0; i < flows.length; i++) if (p.decide(flows[i]!, hit[i] === 1).rule) hits++;
  const rates: number[] = [];
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const t = performance.now();
    for (let i = 0; i < flows.length; i++) if (p.decide(flows[i]!, hit[i] === 1).rule) hits++;
    rates.push(flows.length / ((performance.now() - t) / 1000));
  }
  return rates.sort((a, b) => a - b)[rates.length >> 1]! + (hits & 0);
}
