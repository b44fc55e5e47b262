-- One page of a sweep of the queue for messages past their own ttl (or the queue's time to
-- live), from position `from`: the expired ones are removed where they are (each LSET to a
-- placeholder no message can be, then one LREM from the head), the rest keep their order.
-- Returns how many expired, where the next page starts, the earliest expiry of a kept message
-- with a ttl (nil if none), and whether this was the last page.
-- Cost: `page` entries read and parsed in Lua; for the LRANGE, each LSET and the LREM, Redis
-- walks to the page in C, node by node (about 128 small entries a node) from the nearer end
-- of the list: a deep page with many expired entries in a very long queue costs the most.
local SWEPT = '\0rm:swept\0'

local function sweepPage(queue, from, page, cutoff, now)
  local entries = redis.call('LRANGE', queue, from, from + page - 1)
  local expired, earliest = 0, nil
  for i, entry in ipairs(entries) do
    if isExpired(entry, cutoff, now) then
      redis.call('LSET', queue, from + i - 1, SWEPT)
      expired = expired + 1
    else
      local ttl = neverSent(entry) and string.match(entry, ',"ttl":(%d+)[,}]')
      local ts = ttl and envelopeTs(entry)
      if ts then
        local at = ts + tonumber(ttl) * 1000
        if not earliest or at < earliest then earliest = at end
      end
    end
  end
  if expired > 0 then redis.call('LREM', queue, expired, SWEPT) end
  return expired, from + #entries - expired, earliest, #entries < page
end

-- The last page's answer: the state's 't' becomes the earliest expiry seen, or goes.
local function sweepDone(state, earliest)
  if earliest then redis.call('HSET', state, 't', earliest) else redis.call('HDEL', state, 't') end
end
