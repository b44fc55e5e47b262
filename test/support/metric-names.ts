// Every metric RedMessenger exposes, with its Prometheus type: what /metrics must list.
export const REDMESSENGER_METRICS: Array<[string, string]> = [
  ['redmessenger_connections', 'gauge'],
  ['redmessenger_identified_connections', 'gauge'],
  ['redmessenger_identify_total', 'counter'],
  ['redmessenger_messages_routed_total', 'counter'],
  ['redmessenger_messages_delivered_total', 'counter'],
  ['redmessenger_messages_queued_total', 'counter'],
  ['redmessenger_messages_acked_total', 'counter'],
  ['redmessenger_messages_requeued_total', 'counter'],
  ['redmessenger_messages_dropped_total', 'counter'],
  ['redmessenger_messages_expired_total', 'counter'],
  ['redmessenger_delivery_latency_seconds', 'histogram'],
  ['redmessenger_redis_command_duration_seconds', 'histogram'],
  ['redmessenger_queue_depth', 'gauge'],
  ['redmessenger_queue_oldest_age_seconds', 'gauge'],
];
