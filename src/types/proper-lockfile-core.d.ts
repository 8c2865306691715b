// The callback core of proper-lockfile 4.x (its public entry wraps it in promises or a
// fresh sync adapter per call). See src/lock.ts for why portlease calls it directly.
declare module 'proper-lockfile/lib/lockfile.js' {
  interface CoreLockOptions {
    stale?: number;
    update?: number;
    retries?: number;
    realpath?: boolean;
    fs?: unknown;
    lockfilePath?: string;
    onCompromised?: (error: Error) => void;
  }
  type Callback<T = void> = (error: NodeJS.ErrnoException | null, value?: T) => void;
  type Release = (callback?: Callback) => void;
  const core: {
    lock(file: string, options: CoreLockOptions, callback: Callback<Release>): void;
    unlock(file: string, options: CoreLockOptions, callback: Callback): void;
  };
  export default core;
}
