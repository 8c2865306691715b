/** User names, for messages and listings only (never for a decision). */
import { readFileSync } from 'node:fs';
import { processCache } from './process-state.js';

/** The name of user `uid` in this system's `/etc/passwd`, if it has one there. */
export function userName(uid: number): string | undefined {
  return processCache('user-names', readUserNames).get(uid);
}

function readUserNames(): Map<number, string> {
  const names = new Map<number, string>();
  let passwd: string;
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return names; // Windows, or no /etc/passwd: uids only
  }
  for (const line of passwd.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name !== undefined && name !== '' && uid !== undefined && /^\d+$/.test(uid) && !names.has(Number(uid)))
      names.set(Number(uid), name);
  }
  return names;
}
