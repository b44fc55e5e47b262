--[[
  Reads owed messages in order, after a position, for a socket that has room.
  When nothing owed is left past the position, the next entries of the queue
  become owed here, in order, and are returned too: the queue is taken over in
  chunks as sockets read, never all at once. Raw entries that another program
  RPUSHed are wrapped in an envelope and given an id when they move, once;
  entries older than the time to live are dropped on the way and counted.

  KEYS[1] owed   KEYS[2] owed data   KEYS[3] queue   KEYS[4] message id counter
  KEYS[5] the user's dropped counter   KEYS[6] index of non-empty queues
  ARGV[1] position (exclusive)   ARGV[2] how many at most   ARGV[3] user id
  ARGV[4] the user's channel (JSON string)   ARGV[5] now (ms since the epoch)
  ARGV[6] expiry cutoff (ms; 0 for none)     ARGV[7] time to live of the dropped counter (ms)

  Returns: {position1, id1, envelope1, position2, id2, envelope2, ...}
]]
local limit, user, channel, now = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local cutoff, counterTtl = tonumber(ARGV[6]), tonumber(ARGV[7])
local out = {}

local ranked = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
if #ranked > 0 then
  local ids = {}
  for i = 1, #ranked, 2 do ids[#ids + 1] = ranked[i] end
  local envelopes = redis.call('HMGET', KEYS[2], unpack(ids))
  for i, envelope in ipairs(envelopes) do
    if envelope then
      out[#out + 1] = ranked[i * 2]
      out[#out + 1] = ids[i]
      out[#out + 1] = envelope
    end
  end
end

-- Nothing more owed past the position: move the next entries of the queue behind it.
local got, expired = #ranked / 2, 0
while got < limit do
  local entries = redis.call('LRANGE', KEYS[3], 0, limit - got - 1)
  local n = #entries
  if n == 0 then
    redis.call('ZREM', KEYS[6], user)
    break
  end
  redis.call('LTRIM', KEYS[3], n, -1)
  local first = redis.call('INCRBY', KEYS[4], n) - n
  local zargs, hargs = {}, {}
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
      out[#out + 1] = first + i
      out[#out + 1] = id
      out[#out + 1] = entry
      got = got + 1
      -- unpack() has a stack limit of a few thousand values: write in chunks.
      if #zargs >= 2000 then
        redis.call('ZADD', KEYS[1], unpack(zargs))
        redis.call('HSET', KEYS[2], unpack(hargs))
        zargs, hargs = {}, {}
      end
    end
  end
  if #zargs > 0 then
    redis.call('ZADD', KEYS[1], unpack(zargs))
    redis.call('HSET', KEYS[2], unpack(hargs))
  end
end
if expired > 0 then
  redis.call('INCRBY', KEYS[5], expired)
  if counterTtl > 0 then redis.call('PEXPIRE', KEYS[5], counterTtl) end
end
return out
