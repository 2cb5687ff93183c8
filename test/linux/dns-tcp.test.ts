/**
 * DNS over TCP: answers framed by a 2-byte length, split over segments, reordered and retransmitted
 * as a TCP stream may be, each handed on exactly once and in order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import dnsPacket from 'dns-packet';
import { DnsNames } from '../../src/linux/dns.js';
import { MAX_STREAMS, TcpDnsStreams } from '../../src/linux/dns-tcp.js';

const ISN = 0xfffffff0; // near the top: the stream's sequence numbers wrap around 2^32

function segment(seq: number, payload: Buffer, flags = 0x10): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(53, 0);
  h.writeUInt32BE(seq >>> 0, 4);
  h[12] = 5 << 4;
  h[13] = flags;
  return Buffer.concat([h, payload]);
}

const answer = (name: string, ip: string): Buffer => dnsPacket.encode({
  type: 'response', id: 1, questions: [{ type: 'A', name }], answers: [{ type: 'A', name, ttl: 60, data: ip }],
});
const framed = (m: Buffer): Buffer => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);

function feed(segments: Buffer[]): Buffer[] {
  const s = new TcpDnsStreams();
  const out: Buffer[] = [];
  for (const seg of segments) s.add('conn', seg, (m) => out.push(Buffer.from(m)));
  return out;
}

test('messages split over segments, two in one segment, across the sequence number wrap', () => {
  const a = answer('a.example.test', '192.0.2.1');
  const b = answer('b.example.test', '192.0.2.2');
  const stream = Buffer.concat([framed(a), framed(b)]);
  const cut = 7;
  const got = feed([segment(ISN, Buffer.alloc(0), 0x12), segment(ISN + 1, stream.subarray(0, cut)), segment(ISN + 1 + cut, stream.subarray(cut))]);
  assert.deepEqual(got, [a, b]);
});

test('a segment after a gap waits for it; retransmissions and overlaps are not read twice', () => {
  const a = answer('a.example.test', '192.0.2.1');
  const b = answer('b.example.test', '192.0.2.2');
  const stream = Buffer.concat([framed(a), framed(b)]);
  const s1 = segment(ISN + 1, stream.subarray(0, 20));
  const s2 = segment(ISN + 21, stream.subarray(20, 50));
  const s3 = segment(ISN + 51, stream.subarray(50));
  const overlap = segment(ISN + 11, stream.subarray(10, 60));
  assert.deepEqual(feed([segment(ISN, Buffer.alloc(0), 0x12), s3, s1, s1, overlap, s2, s3]), [a, b]);
});

test('no SYN-ACK seen (joined mid-stream) or a broken frame: nothing is guessed', () => {
  const a = answer('a.example.test', '192.0.2.1');
  assert.deepEqual(feed([segment(ISN + 1, framed(a))]), []);
  const s = new TcpDnsStreams();
  s.add('conn', segment(ISN, Buffer.alloc(0), 0x12), () => assert.fail('no message'));
  s.add('conn', segment(ISN + 1, Buffer.from([0, 3, 1, 2, 3])), () => assert.fail('no message'));
  assert.equal(s.dropped, 1);
  assert.equal(s.size, 0);
});

test('a FIN ends the stream; the names learnt map the address', () => {
  const names = new DnsNames();
  const s = new TcpDnsStreams();
  s.add('conn', segment(ISN, Buffer.alloc(0), 0x12), (m) => names.learn(m));
  s.add('conn', segment(ISN + 1, framed(answer('tcp.example.test', '192.0.2.9')), 0x11), (m) => names.learn(m));
  assert.deepEqual(names.namesOf('192.0.2.9'), ['tcp.example.test']);
  assert.equal(s.size, 0);
});

test('connections followed at once are bounded: one beyond them is not followed, and is once others end or go idle', () => {
  const s = new TcpDnsStreams();
  const got: Buffer[] = [];
  for (let k = 0; k < MAX_STREAMS; k++) s.add(`open${k}`, segment(ISN, Buffer.alloc(0), 0x12), () => {}, 0);
  const a = answer('late.example.test', '192.0.2.3');
  s.add('late', segment(ISN, Buffer.alloc(0), 0x12), (m) => got.push(m), 1000);
  s.add('late', segment(ISN + 1, framed(a)), (m) => got.push(Buffer.from(m)), 1000);
  assert.equal(got.length, 0, 'not followed');
  assert.equal(s.unfollowed, 1);
  assert.equal(s.size, MAX_STREAMS);
  s.add('open0', segment(ISN + 1, Buffer.alloc(0), 0x11), () => {}, 2000); // one ends
  s.add('late', segment(ISN, Buffer.alloc(0), 0x12), (m) => got.push(m), 2000);
  s.add('late', segment(ISN + 1, framed(a)), (m) => got.push(Buffer.from(m)), 2000);
  assert.deepEqual(got, [a]);
  // all idle past 30 s: a new one is followed, the idle ones forgotten
  s.add('later', segment(ISN, Buffer.alloc(0), 0x12), () => {}, 40_000);
  assert.equal(s.unfollowed, 1);
  assert.equal(s.size, 1);
});
