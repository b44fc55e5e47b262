export { JsonLogger, type JsonLoggerOptions } from './json-logger';
export { createLogger, useLogger, LOG_FORMATS, type LogFormat } from './create-logger';
