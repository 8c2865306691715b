import type { ClaimInfo } from '../api/allocator.js';
import { COMMON_OPTIONS, noPositionals, parseCommandLine } from './args.js';
import { formatDuration } from './duration.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';

/** Why a claim does or does not hold its ports: `live`, `dead` (owner gone) or `expired` (TTL passed). */
export type ClaimStatus = 'live' | 'dead' | 'expired';

function statusOf(claim: ClaimInfo, now: number): ClaimStatus {
  if (claim.live) return 'live';
  return claim.expiresAt !== undefined && claim.expiresAt.getTime() <= now ? 'expired' : 'dead';
}

/** The stable JSON form of one claim: every key always present, absent values `null`. */
function toJson(claim: ClaimInfo, now: number) {
  return {
    id: claim.id,
    ports: claim.ports,
    host: claim.host,
    pid: claim.pid,
    status: statusOf(claim, now),
    live: claim.live,
    label: claim.label ?? null,
    createdAt: claim.createdAt.toISOString(),
    expiresAt: claim.expiresAt?.toISOString() ?? null,
    ageMs: now - claim.createdAt.getTime(),
  };
}

/** A label as a terminal shows it safely: control characters replaced. */
function printable(text: string): string {
  return text.replace(/\p{Cc}/gu, '?');
}

function portRange(ports: readonly number[]): string {
  return ports.length === 1 ? String(ports[0]) : `${ports[0]}-${ports[ports.length - 1]}`;
}

function expiry(claim: ClaimInfo, now: number): string {
  if (claim.expiresAt === undefined) return '-';
  const left = claim.expiresAt.getTime() - now;
  return left > 0 ? `in ${formatDuration(left)}` : `${formatDuration(-left)} ago`;
}

/** Left-aligned columns separated by two spaces. */
function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, column) => cell.padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `portlease list`: every claim in the state file, live or not, as a table or as JSON. */
export async function runList(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine('list', args, { json: { type: 'boolean' }, ...COMMON_OPTIONS });
  if (values.help === true) {
    process.stdout.write(`${HELP.list}\n`);
    return 0;
  }
  noPositionals('list', positionals);
  const allocator = openAllocator('list', values['state-dir']);
  const claims = await allocator.list({ includeDead: true });
  const sticky = allocator.listSticky();
  const elsewhere = allocator.listElsewhere();
  const now = Date.now();
  if (values.json === true) {
    const remembered = sticky.map(({ label, ports, usedAt }) => ({ label, ports, usedAt: usedAt.toISOString() }));
    const others = elsewhere.map(({ ports, uid, user, pid, label }) => ({
      ports,
      uid: uid ?? null,
      user: user ?? null,
      pid: pid ?? null,
      label: label ?? null,
    }));
    const json = {
      stateFile: allocator.stateFile,
      claims: claims.map((claim) => toJson(claim, now)),
      sticky: remembered,
      elsewhere: others,
    };
    process.stdout.write(`${JSON.stringify(json)}\n`);
    return 0;
  }
  const sections: string[] = [];
  if (claims.length === 0) sections.push(`No claims in ${allocator.stateFile}`);
  else {
    const rows = claims.map((claim) => [
      portRange(claim.ports),
      claim.host,
      String(claim.pid),
      statusOf(claim, now),
      printable(claim.label ?? '-'),
      formatDuration(now - claim.createdAt.getTime()),
      expiry(claim, now),
    ]);
    sections.push(table([['PORTS', 'HOST', 'PID', 'STATUS', 'LABEL', 'AGE', 'EXPIRES'], ...rows]));
  }
  if (elsewhere.length > 0) {
    // Not in this state file: other users', or another state directory's (a container's).
    const rows = elsewhere.map(({ ports, uid, user, pid, label }) => [
      portRange(ports),
      uid === undefined ? '?' : printable(user ?? String(uid)),
      uid === undefined ? '?' : String(uid),
      pid === undefined ? '?' : String(pid),
      printable(label ?? '-'),
    ]);
    sections.push(
      `Claimed elsewhere (other users or state directories; not yours to release):\n${table([['PORTS', 'USER', 'UID', 'PID', 'LABEL'], ...rows])}`,
    );
  }
  if (sticky.length > 0) {
    // What --sticky claims will try first, most recently used first.
    const rows = sticky.map(({ label, ports, usedAt }) => [
      printable(label),
      portRange(ports),
      `${formatDuration(now - usedAt.getTime())} ago`,
    ]);
    sections.push(`Sticky ports:\n${table([['LABEL', 'PORTS', 'LAST USED'], ...rows])}`);
  }
  process.stdout.write(`${sections.join('\n\n')}\n`);
  return 0;
}
