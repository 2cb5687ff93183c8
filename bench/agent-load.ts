/**
 * Load generator for bench/agent: opens short TCP connections to host:port as fast as it can,
 * `concurrency` at a time, for `seconds`; prints {connections, errors, perSec, p50us, p99us} as JSON.
 * Latency is from connect() to the connection being established.
 *
 *   node dist/bench/agent-load.js <host> <port> <seconds> <concurrency>
 */
import { connect } from 'node:net';

const [host = '', portText = '', secondsText = '5', concText = '32'] = process.argv.slice(2);
const port = Number(portText);
const until = performance.now() + Number(secondsText) * 1000;
const lat: number[] = [];
let errors = 0;
const firstErrors = new Map<string, number>();
const t0 = performance.now();

function one(): Promise<void> {
  return new Promise((resolve) => {
    const start = performance.now();
    const s = connect({ host, port });
    s.once('connect', () => {
      lat.push(performance.now() - start);
      // A reset, not a FIN: no TIME_WAIT on either side, so a long run never runs out of ports
      // or meets a TIME_WAIT socket on a reused port (which stalls a connect for a second).
      s.resetAndDestroy();
      resolve();
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      errors++;
      firstErrors.set(e.code ?? e.message, (firstErrors.get(e.code ?? e.message) ?? 0) + 1);
      resolve();
    });
  });
}

async function worker(): Promise<void> {
  while (performance.now() < until) await one();
}

await Promise.all(Array.from({ length: Number(concText) }, worker));
const elapsed = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const q = (p: number): number => Math.round((lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0) * 1000);
console.log(JSON.stringify({ connections: lat.length, errors, errorKinds: Object.fromEntries(firstErrors), perSec: Math.round(lat.length / elapsed), p50us: q(0.5), p99us: q(0.99) }));
