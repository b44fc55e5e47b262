--[[
  Registers a connection of a user. The queue is not moved here: sockets take it
  over in chunks as they read (read-6.lua), so an identify costs the same with
  ten queued messages or a million, and Redis is never blocked by one purge.
  Entries at the head of the queue older than its time to live are dropped and
  counted first, so `ready` counts only what will be delivered.

  KEYS[1] queue        KEYS[2] owed (zset id -> order)   KEYS[3] conns (hash connection -> instance)
  KEYS[4] the instance's set of users                    KEYS[5] the user's dropped counter
  KEYS[6] index of non-empty queues
  ARGV[1] connection id   ARGV[2] instance id   ARGV[3] user id
  ARGV[4] instance channel prefix               ARGV[5] expiry cutoff (ms since the epoch; 0 for none)
  ARGV[6] most connections per user (0 for no limit)

  Returns: {messages owed (owed + queued), dropped since the last identify, connections replaced (flat: conn, instance, ...)}
]]
local conn, instance, user, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cutoff, maxConns = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('HSET', KEYS[3], conn, instance)
redis.call('SADD', KEYS[4], user)

-- Past the per-user limit the oldest connections go (connection ids sort by creation time).
local replaced = {}
if maxConns > 0 then
  local all = redis.call('HGETALL', KEYS[3])
  local excess = #all / 2 - maxConns
  if excess > 0 then
    local ids, owners = {}, {}
    for i = 1, #all, 2 do
      owners[all[i]] = all[i + 1]
      if all[i] ~= conn then ids[#ids + 1] = all[i] end
    end
    table.sort(ids)
    for i = 1, excess do
      redis.call('HDEL', KEYS[3], ids[i])
      replaced[#replaced + 1] = ids[i]
      replaced[#replaced + 1] = owners[ids[i]]
      redis.call('PUBLISH', prefix .. owners[ids[i]], 'k|' .. user .. '|' .. ids[i])
    end
  end
end

-- Expired entries sit at the head (the queue is in age order): drop them, bounded per call.
local expired = 0
if cutoff > 0 then
  local head = redis.call('LINDEX', KEYS[1], 0)
  while head and expired < 10000 do
    local ts = tonumber(string.match(head, '^{"rm":{"id":"[^"]+".*"ts":(%d+)}}$'))
    if not ts or ts >= cutoff then break end
    redis.call('LPOP', KEYS[1])
    expired = expired + 1
    head = redis.call('LINDEX', KEYS[1], 0)
  end
  if not head then redis.call('ZREM', KEYS[6], user) end
end

local dropped = tonumber(redis.call('GETDEL', KEYS[5]) or '0') + expired
return {redis.call('ZCARD', KEYS[2]) + redis.call('LLEN', KEYS[1]), dropped, replaced}
