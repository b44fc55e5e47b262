export { MetricsModule } from './metrics.module';
export { MetricsService, type BusyQueue } from './metrics.service';
export { MetricsController } from './metrics.controller';
export * from './metrics.constants';
