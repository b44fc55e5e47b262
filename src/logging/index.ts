export { createLogger, useLogger, LOG_FORMATS, type LogFormat } from './create-logger';
