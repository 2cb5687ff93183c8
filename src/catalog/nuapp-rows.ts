/**
 * NuAppFirewall's rules as a compile reads them (nuapp.ts makes them from a catalog): columns from
 * which each rule object is made when it is needed, rather than one object per rule held for a load.
 */
import { compileRule, type AppCache, type ParsedRule, type Rule, type RuleError, type RuleInput, type RuleSource } from '../policy/index.js';

/**
 * NuAppFirewall's rules as columns: an action and an application per catalog entry, an endpoint
 * (and, in the current format, a port) per rule. Rule objects are made from them on demand: the
 * 153,128 rule objects of the legacy catalog, each with its own id string, held for a whole load,
 * were ~15% of that load in GC (they outlive the young generation), for objects the compile reads
 * once and a verdict rarely asks for again.
 */
export class NuAppRows {
  private readonly actions: string[] = [];
  private readonly apps: string[] = [];
  private readonly lists: string[] = []; // legacy: an entry's endpoints as the file has them, "['h1', 'h2']"
  private n = 0;
  private entryOf: Int32Array = new Int32Array(1024);
  private readonly endpoints: string[] = []; // current format
  private readonly ports: string[] = [];
  private at: Int32Array = new Int32Array(2048); // legacy: where rule i's endpoint lies in its entry's list, start and end

  constructor(private readonly legacy: boolean) {}

  /** The rows as plain data, for another thread (its typed arrays its own, to be moved); fromParts() makes them rows again. */
  parts(): NuAppParts {
    const { legacy, actions, apps, lists, n, endpoints, ports } = this;
    return { legacy, actions, apps, lists, n, endpoints, ports, entryOf: this.entryOf.slice(0, n), at: this.at.slice(0, legacy ? 2 * n : 0) };
  }

  static fromParts(p: NuAppParts): NuAppRows {
    return Object.assign(Object.create(NuAppRows.prototype) as NuAppRows, p);
  }

  get length(): number {
    return this.n;
  }

  get legacyFormat(): boolean {
    return this.legacy;
  }

  entry(action: string, application: string, list = ''): void {
    this.actions.push(action);
    this.apps.push(application);
    this.lists.push(list);
  }

  /** A rule of the last entry (current format). */
  push(endpoint: string, port: string): void {
    this.add();
    this.endpoints.push(endpoint);
    this.ports.push(port);
  }

  /**
   * A rule of the last entry (legacy): its endpoint is list[start .. end). Offsets, not the item
   * itself: 153,128 endpoint strings kept for the load were most of what each young-generation GC
   * had to copy.
   */
  pushItem(start: number, end: number): void {
    const i = this.add();
    if (2 * i + 1 >= this.at.length) this.at = grown(this.at);
    this.at[2 * i] = start;
    this.at[2 * i + 1] = end;
  }

  /** A rule of the last entry: its number. Typed arrays, as pushes onto a number[] of this size were ~50 ms of a legacy load. */
  private add(): number {
    if (this.n === this.entryOf.length) this.entryOf = grown(this.entryOf);
    this.entryOf[this.n] = this.actions.length - 1;
    return this.n++;
  }

  /** Rule i's id: unique, so a compile has no duplicate to look for. */
  id(i: number): string {
    return `nuapp-${i + 1}`;
  }

  /** Rule i as a Tollgate rule. */
  rule(i: number): Rule {
    const e = this.entryOf[i]!;
    const action = this.actions[e] as Rule['action'];
    const application = this.apps[e]!;
    const id = this.id(i);
    if (this.legacy) return { id, action, application, endpoint: this.lists[e]!.slice(this.at[2 * i], this.at[2 * i + 1]) };
    return { id, action, application, endpoint: this.endpoints[i]!, port: this.ports[i]! };
  }

  rules(): Rule[] {
    return Array.from({ length: this.length }, (_, i) => this.rule(i));
  }
}

export interface NuAppParts {
  legacy: boolean;
  actions: string[];
  apps: string[];
  lists: string[];
  n: number;
  entryOf: Int32Array;
  endpoints: string[];
  ports: string[];
  at: Int32Array;
}

function grown(a: Int32Array): Int32Array {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** NuAppRows as a compile's input: each rule object made, compiled and dropped while still young. */
export class NuAppInput implements RuleInput {
  constructor(private readonly rows: NuAppRows) {}

  get length(): number {
    return this.rows.length;
  }

  compile(i: number, cache: AppCache): ParsedRule | RuleError[] {
    const rule = this.rows.rule(i);
    const c = compileRule(rule, i, cache);
    // the current format's application is its entry's identifier unless that is "unknown": an empty
    // one is what is wrong, not the application Tollgate's format would have
    if (Array.isArray(c) && rule.application === '' && !this.rows.legacyFormat) {
      return c.map((e) => (e.field === 'application' ? { ...e, field: 'identifier', message: 'empty identifier (a bundle id, or "unknown" for a rule by its key)' } : e));
    }
    return c;
  }

  idHash(): undefined {
    return undefined; // ids are made unique (NuAppRows.id()): nothing to look for
  }

  sameId(i: number, j: number): boolean {
    return i === j;
  }

  id(i: number): string {
    return this.rows.id(i);
  }

  get source(): RuleSource {
    const made = new Map<number, Rule>(); // a rule is one object however often a verdict asks for it
    return {
      length: this.rows.length,
      get: (i) => {
        let r = made.get(i);
        if (r === undefined) made.set(i, (r = this.rows.rule(i)));
        return r;
      },
      // an image's writer reads every rule once: none kept for it
      text: (i) => JSON.stringify(made.get(i) ?? this.rows.rule(i)),
    };
  }
}
