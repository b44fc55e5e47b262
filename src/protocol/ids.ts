/** A valid user or group id; anything else is refused and never becomes part of a Redis key. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
export const isValidId = (id: unknown): boolean => typeof id === 'string' && ID_PATTERN.test(id);

/** Channels apps PUBLISH to: `rm.users.<id>` for one user, `rm.channels.<cid>` for a group. */
export const USER_CHANNEL_PREFIX = 'rm.users.';
export const GROUP_CHANNEL_PREFIX = 'rm.channels.';
export const userChannel = (id: string): string => `${USER_CHANNEL_PREFIX}${id}`;
