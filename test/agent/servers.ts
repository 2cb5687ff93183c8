/**
 * Peers for the agent's end-to-end test, run inside the server namespace: HTTP on several ports
 * (IPv4 and IPv6), UDP echo, and a DNS server answering a fixed table. Prints "ready" when listening.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import dnsPacket from 'dns-packet';

/** name -> answers; a CNAME is followed by the answers of its target. */
export const ZONE: Record<string, { cname?: string; a?: string[]; aaaa?: string[] }> = {
  'a.allowed.test': { a: ['10.77.0.2'], aaaa: ['fd77::2'] },
  'bad.blocked.test': { a: ['10.77.0.3'] },
  'x.cdn.wild.test': { cname: 'edge.provider.test' },
  'edge.provider.test': { a: ['10.77.0.4'] },
};

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
  dns.on('message', (m, from) => {
    const q = dnsPacket.decode(m);
    const question = q.questions?.[0];
    const answers: dnsPacket.Answer[] = [];
    let name = question?.name.toLowerCase() ?? '';
    for (let hops = 0; hops < 5 && ZONE[name]; hops++) {
      const z = ZONE[name]!;
      if (z.cname) {
        answers.push({ type: 'CNAME', name, ttl: 60, data: z.cname });
        name = z.cname;
        continue;
      }
      if (question?.type === 'A') for (const ip of z.a ?? []) answers.push({ type: 'A', name, ttl: 60, data: ip });
      if (question?.type === 'AAAA') for (const ip of z.aaaa ?? []) answers.push({ type: 'AAAA', name, ttl: 60, data: ip });
      break;
    }
    const res = dnsPacket.encode({
      type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: q.questions ?? [], answers,
    });
    dns.send(res, from.port, from.address);
  });
  waits.push(new Promise((r) => dns.bind(53, '10.77.0.2', r)));
  await Promise.all(waits);
  console.log('ready');
}

await main();
