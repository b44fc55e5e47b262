-- Stored envelopes (src/protocol/envelope.ts owns the format):
-- '{"rm":{"id":"…",…,"ts":N}}' not sent yet; '{"rm":{…},"sent":true}' sent once and back in
-- the queue. Anything else is a raw payload that another program RPUSHed.
local SENT = ',"sent":true}'

local function neverSent(entry)
  return string.sub(entry, -#SENT) ~= SENT
end

-- The inner object ({"id":…,"ts":N}) of an envelope, or nil.
local function innerOf(entry)
  if string.sub(entry, 1, 13) ~= '{"rm":{"id":"' then return nil end
  if string.sub(entry, -2) == '}}' then return string.sub(entry, 7, -2) end
  if not neverSent(entry) and string.sub(entry, -#SENT - 1, -#SENT - 1) == '}' then return string.sub(entry, 7, -#SENT - 1) end
  return nil
end

local function envelopeId(entry)
  local inner = innerOf(entry)
  return inner and string.match(inner, '^{"id":"([^"\\]+)"')
end

-- The channel of an envelope (ids and channels never need JSON escapes), or nil.
local function envelopeChannel(entry)
  local inner = innerOf(entry)
  return inner and string.match(inner, '^{"id":"[^"\\]+","channel":"([^"\\]*)"')
end

local function envelopeTs(entry)
  local inner = innerOf(entry)
  return inner and tonumber(string.match(inner, '[{,]"ts":(%d+)}$'))
end

local function markSent(entry)
  if neverSent(entry) and innerOf(entry) then return string.sub(entry, 1, -2) .. SENT end
  return entry
end

-- Past the queue's time to live (cutoff, 0 for none), or never sent and past its own ttl.
local function isExpired(entry, cutoff, now)
  local ts = envelopeTs(entry)
  if not ts then return false end
  if cutoff > 0 and ts < cutoff then return true end
  if neverSent(entry) then
    local ttl = string.match(entry, ',"ttl":(%d+)[,}]')
    if ttl and ts + tonumber(ttl) * 1000 <= now then return true end
  end
  return false
end

-- Builds an envelope for a raw entry moved out of the queue (the same fields envelope.ts builds).
local function wrapRaw(entry, id, channel, now)
  return '{"rm":{"id":"' .. id .. '","channel":' .. channel .. ',"payload":' .. cjson.encode(entry) .. ',"ts":' .. now .. '}}'
end

-- unpack() has a stack limit of a few thousand values: call a variadic command in chunks.
local function callChunked(command, key, values)
  for i = 1, #values, 1000 do
    redis.call(command, key, unpack(values, i, math.min(i + 999, #values)))
  end
end

-- RPUSH in chunks; returns the list's length after the last one.
local function pushChunked(key, values)
  local len = 0
  for i = 1, #values, 1000 do
    len = redis.call('RPUSH', key, unpack(values, i, math.min(i + 999, #values)))
  end
  return len
end

local function countDropped(counter, n, counterTtl)
  if n <= 0 then return end
  redis.call('INCRBY', counter, n)
  if counterTtl > 0 then redis.call('PEXPIRE', counter, counterTtl) end
end
