--[[
  Drops the entries at the head of a user's queue that are older than the time to
  live, counting them, and files the queue in the index under its new oldest
  entry (raw entries carry no time: they count as fresh, filed under now).

  KEYS[1] queue   KEYS[2] the user's dropped counter   KEYS[3] index of non-empty queues
  ARGV[1] user id   ARGV[2] expiry cutoff (ms since the epoch)   ARGV[3] now
  ARGV[4] time to live of the dropped counter (ms)

  Returns: {expired count, entries left}
]]
local user, cutoff, now, counterTtl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local expired = 0
local head = redis.call('LINDEX', KEYS[1], 0)
local ts
while head and expired < 10000 do
  ts = tonumber(string.match(head, '^{"rm":{"id":"[^"]+".*"ts":(%d+)}}$'))
  if not ts or ts >= cutoff then break end
  redis.call('LPOP', KEYS[1])
  expired = expired + 1
  head = redis.call('LINDEX', KEYS[1], 0)
end
if expired > 0 then
  redis.call('INCRBY', KEYS[2], expired)
  if counterTtl > 0 then redis.call('PEXPIRE', KEYS[2], counterTtl) end
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('ZREM', KEYS[3], user)
else
  redis.call('ZADD', KEYS[3], ts or now, user)
end
return {expired, left}
