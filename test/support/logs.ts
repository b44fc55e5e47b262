// Log lines of warnings the server rate-limits (src/logging/rate-limited-log.ts): one line
// can stand for many, "... (and N more like it in the last S s)".

/** How many warnings the lines matching `re` stand for. */
export function warningsTold(logs: string, re: RegExp): number {
  return logs
    .split('\n')
    .filter((line) => re.test(line))
    .reduce((sum, line) => sum + 1 + Number(/\(and (\d+) more like it in the last \d+ s\)/.exec(line)?.[1] ?? 0), 0);
}
