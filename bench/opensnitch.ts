/** Runs the same load through opensnitchd, when installed (filled in below). */
import type { TestNet } from '../test/agent/netns.js';
import type { LoadResult } from './agent.js';

export async function runOpenSnitch(_net: TestNet, _load: () => LoadResult): Promise<string | { load: LoadResult; cpu: number; rssMB: number; version: string }> {
  return 'opensnitchd not installed';
}
