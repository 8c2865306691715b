// The licences of packages bundled into a build file, as a comment for its end: the MIT and
// ISC licences ask that they travel with the code.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../', import.meta.url).pathname;

/** A block comment naming each of `names` (packages in node_modules) with its licence text. */
export function licenceFooter(names) {
  const licences = names
    .map((name) => {
      const dir = join(root, 'node_modules', name);
      const file = readdirSync(dir).find((entry) => /^licen[cs]e/i.test(entry));
      return file === undefined ? `${name}: see its package.json` : `${name}:\n${readFileSync(join(dir, file), 'utf8').trim()}`;
    })
    .join('\n\n');
  return `/*\nBundled into this file:\n\n${licences.replaceAll('*/', '* /')}\n*/`;
}
