// The goals of issue 12 against the numbers of one `npm run bench`, each met or not: what a
// reader checks first. Where one is not met, bench/RESULTS.md has the profile of what is left.
import { table } from './lib.mjs';

const times = (value) => `${value.toFixed(2)}×`;

/** One row per goal: what it asks, what this run measured, and whether it is met. */
export function goalsTable(facts) {
  const rows = [];
  const goal = (what, value, limit, measured = times(value)) =>
    rows.push([what, measured, `≤ ${limit}×`, Number.isNaN(value) ? '–' : value <= limit ? 'met' : 'not met']);
  for (const processes of [16, 32]) {
    const own = facts.get(`contention.p99.portlease.${processes}`);
    const rival = facts.get(`contention.p99.get-port.${processes}`);
    if (own === undefined) continue;
    if (rival !== undefined)
      goal(`contention p99 at ${processes} processes, × get-port's`, own / rival, 1, `${times(own / rival)} (${own} vs ${rival} ms)`);
    const max = facts.get(`contention.max.portlease.${processes}`);
    goal(`contention max at ${processes} processes, × own p99`, max / own, 2);
    const faults = facts.get(`contention.faults.portlease.${processes}`);
    rows.push([`duplicates, failed binds and errors at ${processes} processes`, String(faults), '0', faults === 0 ? 'met' : 'not met']);
  }
  const node = facts.get('cold.node -e 0');
  const cli = facts.get('cold.portlease CLI claim');
  if (node !== undefined && cli !== undefined) goal('cold CLI claim, × node -e 0', cli / node, 1.3);
  const library = facts.get('cold.portlease findSequentialPorts(), fresh process');
  const getPort = facts.get('cold.get-port, fresh process');
  if (library !== undefined && getPort !== undefined) goal("cold library claim, × get-port's cold call", library / getPort, 1.1);
  for (const [key, value] of facts) {
    const hot = /^hot\.(.+)\.(\d+)$/.exec(key);
    if (hot !== null) goal(`hot claim, ${hot[2]} port${hot[2] === '1' ? '' : 's'}, state on ${hot[1]}, × get-port`, value, 1);
    const growth = /^growth\.(.+)$/.exec(key);
    if (growth !== null) {
      goal(`claim+release at ${value.live} live claims, state on ${growth[1]}, × at 10`, value.claimRelease, 2);
      goal(`fresh CLI claim at ${value.live} live claims, state on ${growth[1]}, × at 10`, value.cli, 2);
    }
  }
  return table(['goal', 'measured', 'limit', 'met?'], rows);
}
