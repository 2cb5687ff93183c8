/**
 * Run by procs.test.ts as pid 1 of a pid namespace of its own (unshare --pid --fork --mount-proc),
 * where it can hand a dead process's pid to the next one (ns_last_pid) without touching the host's
 * numbering. No process events reach the resolver: a pid taken over unseen. Prints what each socket
 * of the new process was taken for, found through the hot processes and through a /proc scan.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { ProcessResolver } from '../../src/linux/procs.js';

const NODE = ['-e', "require('dgram').createSocket('udp4').bind(0, '127.0.0.1', () => console.log('up')); setInterval(() => {}, 1000)"];
const PERL = ['-e', 'use IO::Socket::INET; my $s = IO::Socket::INET->new(Proto => "udp", LocalAddr => "127.0.0.1") or die; $| = 1; print "up\\n"; sleep 60'];

/** A program holding one UDP socket, once it has it. */
function holder(cmd: string, args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    c.stdout!.once('data', () => resolve(c));
    c.once('error', reject);
  });
}

function inodeOf(pid: number): number {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const l = readlinkSync(`/proc/${pid}/fd/${fd}`);
    if (l.startsWith('socket:[')) return Number(l.slice(8, -1));
  }
  throw new Error(`no socket in ${pid}`);
}

async function kill(c: ChildProcess): Promise<void> {
  c.kill('SIGKILL');
  await new Promise((r) => c.once('exit', r));
}

/** A perl holder given the pid `pid` (free now): the namespace's next pid is set just before. */
async function takeOver(pid: number): Promise<ChildProcess> {
  writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
  const c = await holder('/usr/bin/perl', PERL);
  if (c.pid !== pid) throw new Error(`pid ${pid} went to ${c.pid}`);
  return c;
}

const uid = process.getuid!();
const out: Record<string, unknown> = {};

// through the hot processes: the old owner was the last process found
{
  const r = new ProcessResolver();
  const old = await holder(process.execPath, NODE);
  out.hotOld = (await r.resolve(inodeOf(old.pid!), uid))?.path;
  // a socket nobody has: the hot process's fds are read (and it is known alive) before a scan says none
  out.none = await r.resolve(1, uid);
  await kill(old);
  const now = await takeOver(old.pid!);
  out.hotNew = (await r.resolve(inodeOf(now.pid!), uid))?.path;
  await kill(now);
}

// through a /proc scan: four other processes found since, so the old owner is no longer hot
{
  const r = new ProcessResolver();
  const old = await holder(process.execPath, NODE);
  out.scanOld = (await r.resolve(inodeOf(old.pid!), uid))?.path;
  const others = [];
  for (let k = 0; k < 4; k++) {
    const o = await holder(process.execPath, NODE);
    await r.resolve(inodeOf(o.pid!), uid);
    others.push(o);
  }
  await kill(old);
  const now = await takeOver(old.pid!);
  const scans = r.scans;
  out.scanNew = (await r.resolve(inodeOf(now.pid!), uid))?.path;
  out.scanned = r.scans > scans;
  await kill(now);
  for (const o of others) await kill(o);
}

process.stdout.write(JSON.stringify(out));
