import { UsageError } from '../args.js';

// `{{NAME}}` (a literal `{NAME}`), `${NAME}` (shell syntax, left alone) or `{NAME}`.
const TOKEN = /\{\{([A-Za-z_]\w*)\}\}|\$\{[A-Za-z_]\w*\}|\{([A-Za-z_]\w*)\}/g;
// What a port placeholder looks like, known or not: a typo here must not pass as text.
const PORT_LIKE = /(?:^|_)PORTS?(?:_\d+)?$/i;

/** Whether any argument holds a placeholder (or an escaped one) that {@link expandPlaceholders} would change. */
export function hasPlaceholders(args: readonly string[]): boolean {
  return args.some((arg) => [...arg.matchAll(TOKEN)].some((match) => !match[0].startsWith('$')));
}

/**
 * Checks that every port-like `{NAME}` in `args` is one of `names`, before anything is
 * claimed. Throws a {@link UsageError} naming the unknown one and the known ones.
 */
export function checkPlaceholders(args: readonly string[], names: readonly string[]): void {
  for (const arg of args) {
    for (const match of arg.matchAll(TOKEN)) {
      const name = match[2];
      if (name !== undefined && !names.includes(name) && PORT_LIKE.test(name)) {
        throw new UsageError(
          `Unknown placeholder {${name}} in ${JSON.stringify(arg)}; this command provides ${names.map((known) => `{${known}}`).join(', ')}. Write {{${name}}} for the literal text {${name}}.`,
        );
      }
    }
  }
}

/**
 * Replaces `{NAME}` in each argument by the value of variable NAME (`{PORT}`, `{PORTS}`,
 * `{PORT_1}`, `{API_PORT}`). `{{NAME}}` gives the literal text `{NAME}`; `${NAME}` is left
 * alone (it is shell syntax for a `sh -c` script, and the variable is in the environment
 * anyway); any other brace, such as `{}` or `{"a":1}`, passes untouched.
 */
export function expandPlaceholders(args: readonly string[], variables: ReadonlyMap<string, string>): string[] {
  checkPlaceholders(args, [...variables.keys()]);
  return args.map((arg) =>
    arg.replace(TOKEN, (token, escaped: string | undefined, name: string | undefined) => {
      if (escaped !== undefined) return `{${escaped}}`;
      if (name === undefined) return token;
      return variables.get(name) ?? token;
    }),
  );
}
