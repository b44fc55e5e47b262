import { ApiProperty } from '@nestjs/swagger';

/** GET /v1/users/<id>: the user as Redis holds it (the same answer from every instance). */
export class UserView {
  @ApiProperty({ example: 'user1' })
  id!: string;

  @ApiProperty({ description: 'The user has at least one registered connection, on any instance' })
  online!: boolean;

  @ApiProperty({ description: 'Registered connections, on every instance' })
  connections!: number;

  @ApiProperty({ description: 'Messages waiting in the queue' })
  queued!: number;

  @ApiProperty({ description: 'Messages handed (or about to be handed) to sockets and not yet acked' })
  owed!: number;

  @ApiProperty({
    type: Number,
    nullable: true,
    description: "Age of the queue's oldest message; null with an empty queue (a raw entry at the head: the queue index's time for the user, else null)",
  })
  oldestQueuedAgeSeconds!: number | null;

  @ApiProperty({ description: 'Messages dropped or expired since the last identify (what the next ready will say)' })
  dropped!: number;
}
