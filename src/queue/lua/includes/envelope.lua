-- Stored envelopes (src/protocol/envelope.ts owns the format):
-- '{"rm":{"id":"…",…,"ts":N}}' not sent yet; '{"rm":{…},"sent":true}' sent once and back in
-- the queue. Anything else is a raw payload that another program RPUSHed.
local SENT = ',"sent":true}'

local function neverSent(entry)
  return string.sub(entry, -#SENT) ~= SENT
end

-- These run for every message a script touches: plain finds and short substrings, no
-- unanchored patterns over the payload and no copy of the whole inner object.
local HEAD = '{"rm":{"id":"'

-- Ends as an envelope does: '}}', or '},"sent":true}'.
local function envelopeEnd(entry)
  if string.sub(entry, -2) == '}}' then return #entry - 1 end
  if string.sub(entry, -#SENT) == SENT and string.byte(entry, -#SENT - 1) == 125 then return #entry - #SENT end
  return nil
end

local function envelopeId(entry)
  if string.sub(entry, 1, 13) ~= HEAD or not envelopeEnd(entry) then return nil end
  local quote = string.find(entry, '"', 14, true)
  if not quote or quote == 14 then return nil end
  local id = string.sub(entry, 14, quote - 1)
  if string.find(id, '\\', 1, true) then return nil end
  return id
end

-- The channel follows the id (a channel needs no JSON escapes).
local function envelopeChannel(entry)
  local id = envelopeId(entry)
  return id and string.match(entry, '^","channel":"([^"\\]*)"', 14 + #id)
end

-- ts is the inner object's last field (at most 16 digits): read it from the tail. A payload's
-- own '"ts":' is JSON-escaped, so the tail's ',"ts":' is always the envelope's.
local function envelopeTs(entry)
  local stop = envelopeId(entry) and envelopeEnd(entry)
  if not stop then return nil end
  local tail = string.sub(entry, math.max(1, stop - 24), stop)
  return tonumber(string.match(tail, ',"ts":(%d+)}$'))
end

-- The collapse key as it is written in the envelope (a JSON string, quotes included), or nil.
-- It sits just before ts; a payload's own '"collapseKey":' is JSON-escaped, so a match in the
-- tail is always the envelope's. Collapse keys are short (MAX_COLLAPSE_KEY_CHARS): the tail suffices.
local function envelopeCollapseKey(entry)
  local stop = envelopeId(entry) and envelopeEnd(entry)
  if not stop then return nil end
  local tail = string.sub(entry, math.max(1, stop - 1100), stop)
  local at = string.find(tail, ',"collapseKey":"', 1, true)
  return at and string.match(tail, '^(".*"),"ts":%d+}$', at + 15)
end

local function markSent(entry)
  if neverSent(entry) and envelopeId(entry) then return string.sub(entry, 1, -2) .. SENT end
  return entry
end

-- Past the queue's time to live (cutoff, 0 for none), or never sent and past its own ttl.
local function isExpired(entry, cutoff, now)
  local ts = envelopeTs(entry)
  if not ts then return false end
  if cutoff > 0 and ts < cutoff then return true end
  if neverSent(entry) then
    local at = string.find(entry, ',"ttl":', 1, true)
    local ttl = at and tonumber(string.match(entry, '^(%d+)[,}]', at + 7))
    if ttl and ts + ttl * 1000 <= now then return true end
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
