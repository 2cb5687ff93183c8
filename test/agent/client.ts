/**
 * A client program for the agent's end-to-end test: `node client.js tcp|udp <host> <port>` connects
 * (resolving the host through the system resolver) and prints {ok, error, ms} as JSON.
 */
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { connect, isIP } from 'node:net';

const [proto, host = '', portText = ''] = process.argv.slice(2);
const port = Number(portText);
const t0 = performance.now();
const done = (ok: boolean, error?: string): never => {
  console.log(JSON.stringify({ ok, error, ms: Math.round(performance.now() - t0) }));
  process.exit(0);
};
setTimeout(() => done(false, 'timeout'), 3000);

const ip = isIP(host) ? host : (await lookup(host)).address;
if (proto === 'tcp') {
  const s = connect({ host: ip, port });
  s.on('connect', () => { s.end(); done(true); });
  s.on('error', (e: NodeJS.ErrnoException) => done(false, e.code));
} else {
  const u = createSocket(isIP(ip) === 6 ? 'udp6' : 'udp4');
  u.on('message', () => done(true));
  u.on('error', (e: NodeJS.ErrnoException) => done(false, e.code));
  u.connect(port, ip, () => u.send('ping'));
}
