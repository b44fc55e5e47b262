import { Controller, Get, Header, StreamableFile } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import { MetricsService } from './metrics.service';

/** `GET /metrics`: every metric in the Prometheus text exposition format. */
@ApiTags('metrics')
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: MetricsService) {}

  /**
   * Sent as a StreamableFile so that the platform passes the body and the
   * registry's exact Content-Type through (Express would rewrite a string
   * reply's Content-Type parameters).
   */
  @Get()
  @ApiOperation({ summary: 'Every metric, named redmessenger_*, in the Prometheus text format' })
  @ApiProduces('text/plain; version=0.0.4; charset=utf-8')
  @ApiOkResponse({ description: 'The Prometheus text exposition', schema: { type: 'string' } })
  @Header('Cache-Control', 'no-store')
  async scrape(): Promise<StreamableFile> {
    const body = Buffer.from(await this.metrics.render(), 'utf8');
    return new StreamableFile(body, { type: this.metrics.contentType, length: body.length });
  }
}
