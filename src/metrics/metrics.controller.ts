import { Controller, Get, Header, Res } from '@nestjs/common';
import { MetricsService } from './metrics.service';

/** Minimal view of the platform response (Express and Fastify both have these). */
interface Reply {
  header(name: string, value: string): unknown;
}

/** `GET /metrics`: every metric in the Prometheus text exposition format. */
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  async scrape(@Res({ passthrough: true }) reply: Reply): Promise<string> {
    reply.header('Content-Type', this.metrics.contentType);
    return this.metrics.render();
  }
}
