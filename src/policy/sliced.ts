/**
 * Long work on the event loop without holding it: a generator that yields between small steps is
 * run in slices of `sliceMs`, with other events let run between them (the agent keeps deciding
 * while it compiles a reloaded catalog or writes a policy image).
 */

/** Runs `steps` to its end; rejects with `signal`'s reason once it is aborted (checked between slices). */
export async function runSliced<T>(steps: Generator<void, T>, sliceMs: number, signal?: AbortSignal): Promise<T> {
  let start = performance.now();
  for (;;) {
    const s = steps.next();
    if (s.done) return s.value;
    if (performance.now() - start >= sliceMs) {
      await new Promise((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
      start = performance.now();
    }
  }
}
