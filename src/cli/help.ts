// Help texts, kept apart so that `--help` and `--version` load nothing of the library.

const EXIT_CODES_TEXT = `Exit codes:
  0  done
  1  other failure (unsafe or unreadable state directory, owner not alive, host unavailable)
  2  bad usage: unknown flag, malformed value, missing command (nothing was changed)
  3  PORTLEASE_EXHAUSTED: no run of free ports fits
  4  PORTLEASE_LOCK_TIMEOUT: another process held the state lock too long
  141  the reader of the output went away (as for SIGPIPE); claims stay recorded
  exec exits with its command's code (128+N when it was killed by signal N).`;

const COMMON_TEXT = `  --state-dir DIR  state directory (default: $PORTLEASE_STATE_DIR, else <tmp>/portlease-<uid>)
  -h, --help       show this help`;

const PROBE_TEXT = `  --protocol P     tcp (default), udp, or both: the port spaces the ports must be free in
  --exclude LIST   ports and ranges never to hand out, e.g. 5432,6379-6380
  --allow-ephemeral  also hand out ports of the kernel's ephemeral range
  --allow-unsafe   also hand out ports browsers refuse (6000, 6665-6669, 10080, ...)
  --allow-reserved also hand out ports the OS reserves (Linux ip_local_reserved_ports,
                   Windows excluded port ranges)
  --max M          never hand out a port above M (default 65535)
  --sticky         with --label: first try the ports that label held last time, if
                   free and unclaimed (remembered in the state directory)`;

const OWNER_TEXT = `The claim belongs to the process that will use the ports: the one that reads
portlease's output (the shell of P=$(portlease claim), a background job's own
subshell, the Python of subprocess.run), else the parent, walking up past
wrappers that end with their command (timeout, flock, env, nice, xargs, npm exec,
a 'sh -c' its parent waits for) but stopping at a background job. The ports stay
claimed until that process ends or runs 'portlease release'. As PID 1 of a
namespace, pass --ttl or --pid. Without /proc the owner is the parent process.`;

/** Help text of each command, and of the tool (key `''`). */
export const HELP: Readonly<Record<string, string>> = {
  '': `portlease - free TCP ports for many processes on one host, without races

Usage: portlease COMMAND [options]

Commands:
  claim    claim consecutive free ports and print them
  release  give claimed ports back
  list     show who holds which ports
  reap     drop the claims of dead owners and expired claims now
  exec     claim ports, run a command with them in its environment, release on exit

Options:
  -h, --help     show help (also 'portlease COMMAND --help')
  -V, --version  print the version

${EXIT_CODES_TEXT}`,

  claim: `Usage: portlease claim [--count N | --names LIST] [--base B] [--host H] [--label L] [--pid PID | --ttl DURATION]
                       [--protocol P] [--exclude LIST] [--allow-ephemeral] [--allow-unsafe] [--allow-reserved] [--max M]
                       [--format plain|env|json] [--prefix P]

Claims N consecutive free ports and prints them on stdout, space-separated.

  -n, --count N    how many consecutive ports (default 1, or the number of --names)
  --names LIST     name the ports, e.g. api,db,metrics (letters, digits, _): with
                   --format env or json they appear as API_PORT=..., DB_PORT=...
  --base B         lowest port to consider (default 8090)
  --host H         address the ports must be free on (default 0.0.0.0)
  --label L        free text shown by 'portlease list'
  --pid PID        the claim lives as long as process PID
  --ttl DURATION   the claim expires after DURATION (90s, 30m, 2h, 1h30m), whoever is alive
${PROBE_TEXT}
  --format F       plain (default): the ports, space-separated;
                   env: NAME=port lines (PORT, PORT_0 ..., and API_PORT ... with --names),
                   for eval, .env files, docker compose and make;
                   json: {"ports":[...],"host":...,"pid":...,"label":...,"expiresAt":...
                   ,"names":{...}} (names only with --names)
  --json           the same as --format json
  --prefix P       put P in front of the variable names of --format env (DB_PORT, ...)
${COMMON_TEXT}

${OWNER_TEXT}

Examples:
  PORTS=$(portlease claim --count 3)   # e.g. "8090 8091 8092"
  eval "$(portlease claim --format env --names api,db)"   # sets API_PORT, DB_PORT

${EXIT_CODES_TEXT}`,

  release: `Usage: portlease release [PORT ...] [--pid PID] [--label L] [--json]

Gives claimed ports back and prints the released ports. With PORTs, only those; with
none, every port that matches. Without --pid and --label, only claims of the default
owner (the same process 'claim' would choose) are released; with --label alone, that
label's claims of any owner. Releasing what is not claimed is not an error.

  --pid PID   release claims owned by PID
  --label L   release claims labelled L
  --json      print {"released":[...]}
${COMMON_TEXT}

${EXIT_CODES_TEXT}`,

  list: `Usage: portlease list [--json]

Shows every claim in the state file: ports, host, owner PID, status (live; dead: the
owner is gone; expired: its TTL passed), label, age and expiry. Dead and expired claims
stay listed until they are reaped. Then the ports remembered for --sticky claims, per
label, most recently used first.

  --json   print {"stateFile":...,"claims":[{"id","ports","host","pid","status","live",
           "label","createdAt","expiresAt","ageMs"}],"sticky":[{"label","ports","usedAt"}]}
           (absent values are null)
${COMMON_TEXT}

${EXIT_CODES_TEXT}`,

  reap: `Usage: portlease reap [--json]

Drops every claim whose owner is gone or whose TTL has passed, and says how many.
(Searches also do this on their own for the claims they run into.)

  --json   print {"reaped":N}
${COMMON_TEXT}

${EXIT_CODES_TEXT}`,

  exec: `Usage: portlease exec [--count N | --names LIST] [--base B] [--host H] [--label L] [--protocol P]
                      [--exclude LIST] [--allow-ephemeral] [--allow-unsafe] [--allow-reserved] [--max M] [--prefix P]
                      [--kill-after DURATION] [--listen] -- COMMAND [ARG ...]

Claims ports, runs COMMAND with them in its environment, and releases them when it
exits. COMMAND runs directly, not through a shell: its arguments pass untouched but for
placeholders.
Environment: PORT (the first port), PORTS (all, space-separated), PORT_0 ... PORT_{N-1},
and with --names api,db: API_PORT, DB_PORT.
Placeholders: {PORT}, {PORTS}, {PORT_0}, {API_PORT} ... (any of those variables) in
COMMAND and its arguments are replaced by the value. {{PORT}} gives the literal text
{PORT}; \${PORT} is left alone (shell syntax); other braces such as {} pass untouched.
An unknown port-like placeholder ({PORT_5} of 2 ports) is a usage error.
COMMAND runs in a process group of its own (and without a controlling terminal).
SIGINT, SIGTERM and SIGHUP are forwarded to that whole group, and so is a SIGTERM when
portlease's parent (or npx/npm exec above it) goes away, unless portlease runs in the
background (&, setsid); whatever of the group still runs after
--kill-after gets SIGKILL. The ports are released only once nothing of the group runs.
The claim belongs to COMMAND's own process, so it is held while COMMAND runs, even if
portlease itself is killed; if COMMAND exits first, portlease holds it for the rest.

  -n, --count N   how many consecutive ports (default 1, or the number of --names)
  --names LIST    name the ports, e.g. api,db: API_PORT, DB_PORT, {API_PORT}, ...
  --base B        lowest port to consider (default 8090)
  --host H        address the ports must be free on (default 0.0.0.0)
  --label L       free text shown by 'portlease list'
${PROBE_TEXT}
  --prefix P      put P in front of the variable names: --prefix DB_ gives DB_PORT,
                  DB_PORTS, DB_PORT_0, ...
  --kill-after D  SIGKILL the group if it still runs D after a signal (default 10s)
  --listen        listen on the ports before COMMAND starts and hand it the sockets as
                  fds 3, 4, ... with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (socket
                  activation: no other process can bind them meanwhile); at most 6 ports,
                  not on Windows
${COMMON_TEXT}

Examples:
  portlease exec --count 2 -- node server.js   # server reads process.env.PORT_0, PORT_1
  portlease exec -- python3 -m http.server {PORT}
  portlease exec --names web,api -- ./dev --web {WEB_PORT} --api {API_PORT}
  portlease exec --listen -- node -e 'require("http").createServer(h).listen({ fd: 3 })'

${EXIT_CODES_TEXT}`,
};
