import { ConsoleLogger, Logger, type INestApplicationContext, type LoggerService, type LogLevel } from '@nestjs/common';

/** `LOG_FORMAT`: readable lines, or one JSON object per line; both are Nest's ConsoleLogger. */
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The logger for a format, printing the given levels. `text` is coloured only when
 * standard output is a terminal (colorsWanted). `json` is ConsoleLogger's
 * own JSON mode: `{"level","pid","timestamp","message","context"}` (plus `stack`
 * for errors), one object per line through JSON.stringify (so a message's newlines
 * stay escaped), colors off; error lines go to stderr, the rest to stdout.
 */
export function createLogger(format: LogFormat, levels: LogLevel[]): LoggerService {
  if (format === 'json') return new ConsoleLogger({ json: true, colors: false, compact: true, logLevels: levels });
  return new ConsoleLogger({ logLevels: levels, colors: colorsWanted() });
}

/**
 * Colour codes only for a person at a terminal: a container's or a service manager's
 * log file would keep them as noise. NO_COLOR (no-color.org) turns them off anyway.
 */
export function colorsWanted(stdout: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return stdout.isTTY === true && !env.NO_COLOR;
}

/**
 * Installs the logger of `format` on an application, the buffered start-up lines
 * included, and keeps `Logger.isLevelEnabled()` (which code uses to skip building
 * per-message lines) answering for the same levels: Nest only sets those levels
 * when `useLogger` is given an array, never when it is given a logger object.
 */
export function useLogger(app: INestApplicationContext, format: LogFormat, levels: LogLevel[]): void {
  Logger.overrideLogger(levels);
  app.useLogger(createLogger(format, levels));
}
