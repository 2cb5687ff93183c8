import type { Policy } from './policy.js';
import type { Action, Flow, Verdict } from './types.js';

export interface AskOptions {
  /** Asks a person (dashboard prompt, terminal, ...). Resolves to their answer. */
  ask: (flow: Flow, pending: Verdict) => Promise<Action>;
  /** How long to wait for the answer. */
  timeoutMs: number;
  /** The action when nobody answers in time or the prompt fails. */
  defaultAction: Action;
}

/**
 * decide() and, when the verdict is "ask", the answer of a person within a timeout.
 * A prompt that throws counts as unanswered: the default applies and the reason says why.
 */
export async function decideWithAsk(policy: Policy, flow: Flow, opts: AskOptions, now?: number): Promise<Verdict> {
  const v = policy.decide(flow, now);
  if (v.action !== 'ask') return v;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), opts.timeoutMs);
  });
  try {
    const answer = await Promise.race([opts.ask(flow, v), timeout]);
    if (answer === 'timeout') {
      return { action: opts.defaultAction, level: 'default', reason: `ask: no answer within ${opts.timeoutMs} ms; default ${opts.defaultAction}` };
    }
    if (answer !== 'allow' && answer !== 'block') throw new Error(`invalid answer ${JSON.stringify(answer)}`);
    return { action: answer, level: 'default', reason: `ask: answered ${answer}` };
  } catch (e) {
    return { action: opts.defaultAction, level: 'default', reason: `ask: prompt failed (${(e as Error).message}); default ${opts.defaultAction}` };
  } finally {
    clearTimeout(timer);
  }
}
