import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/cli/args.js';
import { expandPlaceholders, hasPlaceholders } from '../../../src/cli/exec/placeholders.js';
import { envLines, portVariables } from '../../../src/cli/port-variables.js';
import { trampolineScript } from '../../../src/cli/exec/trampoline.js';

const variables = portVariables({ prefix: '', names: ['api', 'db'] }, [8090, 8091]);

describe('exec placeholders', () => {
  it('names the variables of a claim in a stable order', () => {
    expect([...variables]).toEqual([
      ['PORT', '8090'],
      ['PORTS', '8090 8091'],
      ['PORT_0', '8090'],
      ['PORT_1', '8091'],
      ['API_PORT', '8090'],
      ['DB_PORT', '8091'],
    ]);
    expect(envLines({ prefix: 'X_', names: undefined }, [1, 2])).toBe('X_PORT=1\nX_PORT_0=1\nX_PORT_1=2\n');
  });

  it('fills known names, keeps escapes, shell syntax and other braces', () => {
    expect(expandPlaceholders(['{PORT}:{DB_PORT}', '{{PORTS}}', '${PORT}', '{}', '{a}', '{{x}}', '{PORT}{PORT}'], variables)).toEqual([
      '8090:8091',
      '{PORTS}',
      '${PORT}',
      '{}',
      '{a}',
      '{x}',
      '80908090',
    ]);
    expect(hasPlaceholders(['${PORT}', '{}'])).toBe(false);
    expect(hasPlaceholders(['x{{PORT}}'])).toBe(true);
  });

  it('refuses unknown port-like names', () => {
    for (const arg of ['{PORT_2}', '{WEB_PORT}', '{port}', '{X_PORTS}']) {
      expect(() => expandPlaceholders([arg], variables)).toThrow(UsageError);
    }
  });

  it('tells the trampoline the arguments with backslashes and newlines escaped for printf %b', () => {
    expect(trampolineScript({ env: { PORT: '1' }, argv: ['a\\b', 'c\nd'], listenPid: true })).toBe(
      'PORT=1\narg=a\\\\b\narg=c\\nd\nlisten-pid\nexec\n',
    );
  });
});
