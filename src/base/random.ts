/**
 * A short unguessable token of `[0-9a-z]`, for file names, claim ids and write tokens.
 * Math.random is seeded per isolate from the OS; node:crypto would cost a cold start.
 */
export function randomToken(): string {
  return `${Math.random().toString(36).slice(2, 10)}${Math.random().toString(36).slice(2, 10)}`;
}
