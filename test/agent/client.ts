/**
 * A client program for the agent's end-to-end test: `node client.js tcp|udp <host> <port>` connects
 * (resolving the host through the system resolver) and prints {ok, error, ms} as JSON. An optional
 * fourth argument keeps a TCP connection open that many ms before closing it.
 */
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { connect, isIP } from 'node:net';

const [proto, host = '', portText = '', holdText = '0'] = process.argv.slice(2);
const port = Number(portText);
const t0 = performance.now();
const done = (ok: boolean, error?: string): never => {
  console.log(JSON.stringify({ ok, error, ms: Math.round(performance.now() - t0) }));
  process.exit(0);
};
setTimeout(() => done(false, 'timeout'), 3000 + Number(holdText));

const ip = isIP(host) ? host : (await lookup(host)).address;
if (proto === 'tcp') {
  const s = connect({ host: ip, port });
  s.on('connect', () => setTimeout(() => { s.end(); done(true); }, Number(holdText)));
  s.on('error', (e: NodeJS.ErrnoException) => done(false, e.code));
} else {
  const u = createSocket(isIP(ip) === 6 ? 'udp6' : 'udp4');
  u.on('message', () => done(true));
  u.on('error', (e: NodeJS.ErrnoException) => done(false, e.code));
  u.connect(port, ip, () => u.send('ping'));
}
