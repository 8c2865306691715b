/**
 * A /bin/sh that waits for control lines on fd 3 (see {@link trampoline}) and then replaces itself with the command
 * ("$@", never parsed by the shell). Its PID, and on Linux its start time, are the
 * command's: the claim can be made for the command's own process before it starts, though
 * the ports only exist once claimed. Lines:
 *
 * - `NAME=VALUE`: export a variable;
 * - `arg=TEXT`: the first one empties "$@", each appends one argument (TEXT with `\\` and
 *   `\n` escaped, decoded by printf's `%b`), for arguments with placeholders filled in;
 * - `listen-pid`: export `LISTEN_PID` as the shell's own PID, which `exec` keeps;
 * - `exec`: run the command.
 *
 * On end of input without `exec` (the claim failed) it exits 125 without running anything.
 */
const TRAMPOLINE = `portlease_args=
while IFS= read -r portlease_line <&3; do
  case $portlease_line in
    exec)
      command -v "$1" >/dev/null 2>&1 || { printf '%s: %s: command not found\\n' "$0" "$1" >&2; exit 127; }
      exec "$@" 3<&- ;;
    arg=*)
      [ -n "$portlease_args" ] || { portlease_args=1; set --; }
      portlease_arg=\${portlease_line#arg=}
      case $portlease_arg in *\\\\*) portlease_arg=$(printf '%bx' "$portlease_arg"); portlease_arg=\${portlease_arg%x} ;; esac
      set -- "$@" "$portlease_arg" ;;
    listen-pid) LISTEN_PID=$$; export LISTEN_PID ;;
    *) export "$portlease_line" ;;
  esac
done
exit 125`;

/**
 * The trampoline script reading its control lines from `fd` (3 unless listening sockets
 * take fds 3 and up; a single digit, as dash reads no other) and closing it before `exec`.
 */
export function trampoline(fd = 3): string {
  if (!Number.isInteger(fd) || fd < 3 || fd > 9) throw new RangeError(`The trampoline's control fd must be 3 to 9, got ${fd}.`);
  return TRAMPOLINE.replace('<&3;', `<&${fd};`).replace('3<&-', `${fd}<&-`);
}

/** One argument as an `arg=` line: backslashes and newlines escaped for printf's `%b`. */
function argLine(arg: string): string {
  return `arg=${arg.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n`;
}

/** What the trampoline is told before it runs the command. */
export interface TrampolineOrders {
  /** Variables to export. */
  env: ReadonlyMap<string, string> | Readonly<Record<string, string>>;
  /** The whole command line anew (command first), when it differs from the one it was started with. */
  argv?: readonly string[] | undefined;
  /** Export `LISTEN_PID` as the command's own PID. */
  listenPid?: boolean | undefined;
}

/** The control text that makes the trampoline run the command. */
export function trampolineScript(orders: TrampolineOrders): string {
  const env = orders.env instanceof Map ? [...orders.env] : Object.entries(orders.env);
  return [
    ...env.map(([name, value]) => `${name}=${value}\n`),
    ...(orders.argv ?? []).map(argLine),
    orders.listenPid === true ? 'listen-pid\n' : '',
    'exec\n',
  ].join('');
}
