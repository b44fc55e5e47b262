--[[
  Registers a connection of a user and takes over the user's queue: every queued
  entry moves, in order, behind what is already owed (owed is older: it is left
  over from a connection that is still open or from a crash). Raw entries that
  another program RPUSHed are wrapped in an envelope and given an id here, once.
  Entries older than the queue's time to live are dropped on the way and counted.
  Presence and queue change in one step, so a message routed after this script
  is owed to the connection and one routed before it is in what was moved.

  KEYS[1] queue        KEYS[2] owed (zset id -> order)   KEYS[3] owed data (hash id -> envelope)
  KEYS[4] conns (hash connection -> instance)            KEYS[5] message id counter
  KEYS[6] the instance's set of users                    KEYS[7] the user's dropped counter
  KEYS[8] index of non-empty queues
  ARGV[1] connection id   ARGV[2] instance id   ARGV[3] user id
  ARGV[4] the user's channel (JSON string)      ARGV[5] now (ms since the epoch)
  ARGV[6] instance channel prefix               ARGV[7] expiry cutoff (ms since the epoch; 0 for none)
  ARGV[8] most connections per user (0 for no limit)

  Returns: {owed count, moved count, dropped since the last identify, connections replaced (flat: conn, instance, ...)}
]]
local conn, instance, user, channel, now, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cutoff, maxConns = tonumber(ARGV[7]), tonumber(ARGV[8])
redis.call('HSET', KEYS[4], conn, instance)
redis.call('SADD', KEYS[6], user)

-- Past the per-user limit the oldest connections go (connection ids sort by creation time).
local replaced = {}
if maxConns > 0 then
  local all = redis.call('HGETALL', KEYS[4])
  local excess = #all / 2 - maxConns
  if excess > 0 then
    local ids = {}
    for i = 1, #all, 2 do if all[i] ~= conn then ids[#ids + 1] = all[i] end end
    table.sort(ids)
    local owners = {}
    for i = 1, #all, 2 do owners[all[i]] = all[i + 1] end
    for i = 1, excess do
      redis.call('HDEL', KEYS[4], ids[i])
      replaced[#replaced + 1] = ids[i]
      replaced[#replaced + 1] = owners[ids[i]]
      redis.call('PUBLISH', prefix .. owners[ids[i]], 'k|' .. user .. '|' .. ids[i])
    end
  end
end

local expired = 0
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local n = #entries
if n > 0 then
  local first = redis.call('INCRBY', KEYS[5], n) - n
  local zargs, hargs = {}, {}
  local function flush()
    if #zargs > 0 then
      redis.call('ZADD', KEYS[2], unpack(zargs))
      redis.call('HSET', KEYS[3], unpack(hargs))
      zargs, hargs = {}, {}
    end
  end
  for i = 1, n do
    local entry = entries[i]
    local id = string.sub(entry, -2) == '}}' and string.match(entry, '^{"rm":{"id":"([^"]+)"') or nil
    local ts = id and tonumber(string.match(entry, '"ts":(%d+)}}$'))
    if ts and cutoff > 0 and ts < cutoff then
      expired = expired + 1
    else
      if not id then
        id = tostring(first + i)
        entry = '{"rm":{"id":"' .. id .. '","channel":' .. channel .. ',"payload":' ..
          cjson.encode(entry) .. ',"ts":' .. now .. '}}'
      end
      zargs[#zargs + 1] = first + i
      zargs[#zargs + 1] = id
      hargs[#hargs + 1] = id
      hargs[#hargs + 1] = entry
      if #zargs >= 2000 then flush() end
    end
  end
  flush()
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[8], user)

  -- Sockets of this user that were already reading owed must look again.
  local seen = {}
  for _, other in ipairs(redis.call('HVALS', KEYS[4])) do
    if not seen[other] then
      seen[other] = true
      redis.call('PUBLISH', prefix .. other, 's|' .. user)
    end
  end
end
local dropped = tonumber(redis.call('GETDEL', KEYS[7]) or '0') + expired
return {redis.call('ZCARD', KEYS[2]), n - expired, dropped, replaced}
