/**
 * Peers for the agent's end-to-end test, run inside the server namespace: HTTP on several ports
 * (IPv4 and IPv6), UDP echo, and a DNS server answering a fixed table over UDP and TCP (names in
 * TCP_ONLY only over TCP). Prints "ready" when listening.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import dnsPacket from 'dns-packet';

/** name -> answers; a CNAME is followed by the answers of its target. */
export const ZONE: Record<string, { cname?: string; a?: string[]; aaaa?: string[] }> = {
  'a.allowed.test': { a: ['10.77.0.2'], aaaa: ['fd77::2'] },
  'bad.blocked.test': { a: ['10.77.0.3'] },
  'x.cdn.wild.test': { cname: 'edge.provider.test' },
  'edge.provider.test': { a: ['10.77.0.4'] },
  // One address, two names (shared hosting): one blocked, one not.
  'shared.blocked.test': { a: ['10.77.0.6'] },
  'shared.allowed.test': { a: ['10.77.0.6'] },
};

export const TCP_ONLY: typeof ZONE = {
  'tcp-only.blocked.test': { a: ['10.77.0.5'] },
};

/** The answer to one DNS query from `zone`. */
function answer(query: Buffer, zone: typeof ZONE): Buffer {
  const q = dnsPacket.decode(query);
  const question = q.questions?.[0];
  const answers: dnsPacket.Answer[] = [];
  let name = question?.name.toLowerCase() ?? '';
  for (let hops = 0; hops < 5 && zone[name]; hops++) {
    const z = zone[name]!;
    if (z.cname) {
      answers.push({ type: 'CNAME', name, ttl: 60, data: z.cname });
      name = z.cname;
      continue;
    }
    if (question?.type === 'A') for (const ip of z.a ?? []) answers.push({ type: 'A', name, ttl: 60, data: ip });
    if (question?.type === 'AAAA') for (const ip of z.aaaa ?? []) answers.push({ type: 'AAAA', name, ttl: 60, data: ip });
    break;
  }
  return dnsPacket.encode({
    type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: q.questions ?? [], answers,
  });
}

const HTTP_PORTS = [80, 8080, 9100, 9200];
const UDP_PORTS = [9998, 9999];

async function main(): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const port of HTTP_PORTS) {
    const s = createServer((_req, res) => res.end('ok\n'));
    waits.push(new Promise((r) => s.listen({ port, host: '::', ipv6Only: false }, r)));
  }
  for (const port of UDP_PORTS) {
    const u = createSocket({ type: 'udp6', ipv6Only: false });
    u.on('message', (m, from) => u.send(m, from.port, from.address));
    waits.push(new Promise((r) => u.bind(port, '::', r)));
  }
  const dns = createSocket('udp4');
  dns.on('message', (m, from) => dns.send(answer(m, ZONE), from.port, from.address));
  // Over TCP each message is framed by a 2-byte length; the answer goes out in two segments
  // (length first), as a server may send it, so the agent has to put the stream back together.
  const dnsTcp = createTcpServer((c) => {
    let buf = Buffer.alloc(0);
    let sent = Promise.resolve(); // answers in order: each one's two parts before the next's
    c.on('error', () => {});
    c.setNoDelay(true);
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const res = answer(buf.subarray(2, 2 + buf.readUInt16BE(0)), { ...ZONE, ...TCP_ONLY });
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        sent = sent.then(() => {
          c.write(Buffer.from([res.length >> 8, res.length & 0xff]));
          return new Promise((r) => setTimeout(() => { c.write(res); r(); }, 5));
        });
      }
    });
  });
  waits.push(new Promise((r) => dnsTcp.listen(53, '10.77.0.2', r)));
  waits.push(new Promise((r) => dns.bind(53, '10.77.0.2', r)));
  await Promise.all(waits);
  console.log('ready');
}

await main();
