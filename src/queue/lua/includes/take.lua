-- Reads up to `limit` owed messages from the absolute position `pos` on (ids acked out of
-- order are skipped). Once past the end of what is owed, the next entries of the queue
-- become owed here, in order: the queue is taken over in chunks as sockets read, never all
-- at once. Raw entries get an envelope and an id (ctx.idPrefix .. n, the prefix unique to the
-- call) when they move; expired ones are dropped on the way and counted, at most 10 * limit
-- entries per call. At most about ctx.maxBytes of entries are read (always one at least), so a
-- queue of large messages is read a page at a time, never all at once into the server's memory.
-- Returns the flat {position, envelope, ...} list, the position after
-- the last one read, how many expired, and whether more may be owed than was read (so the
-- socket must read again).
local function take(queue, owed, st, pos, limit, ctx)
  local b = st.b
  if pos < b then pos = b end
  local out, got = {}, 0
  local idx = pos - b
  local entries = redis.call('LRANGE', owed, idx, idx + limit - 1)
  local bytes = 0
  for i = 1, #entries do
    -- Only ids acked out of order are skipped: with none (the usual case) nothing is parsed.
    local id = st.nacked > 0 and envelopeId(entries[i])
    if not (id and st.acked[id]) then
      out[#out + 1] = pos + i - 1
      out[#out + 1] = entries[i]
    end
    bytes = bytes + #entries[i]
    if bytes >= ctx.maxBytes and i < #entries then return out, pos + i, 0, true end
  end
  got = #entries
  if got >= limit then return out, pos + got, 0, true end
  local owedLen = idx + got
  if got == 0 and idx > 0 then owedLen = redis.call('LLEN', owed) end
  if owedLen > idx + got then return out, pos + got, 0, true end

  local expired, raw, budget = 0, 0, 10 * limit
  while got < limit do
    if budget <= 0 then return out, b + owedLen, expired, true end
    local moved = redis.call('LRANGE', queue, 0, math.min(limit - got, budget) - 1)
    if #moved == 0 then break end
    local n = #moved
    for i = 1, n do
      bytes = bytes + #moved[i]
      if bytes >= ctx.maxBytes then
        n = i
        break
      end
    end
    budget = budget - n
    redis.call('LTRIM', queue, n, -1)
    local push = {}
    for i = 1, n do
      local entry = moved[i]
      if not envelopeId(entry) then
        raw = raw + 1
        entry = wrapRaw(entry, ctx.idPrefix .. raw, ctx.channel, ctx.now)
      end
      if isExpired(entry, ctx.cutoff, ctx.now) then
        expired = expired + 1
      else
        push[#push + 1] = entry
        out[#out + 1] = b + owedLen + #push - 1
        out[#out + 1] = entry
      end
    end
    if #push > 0 then callChunked('RPUSH', owed, push) end
    owedLen = owedLen + #push
    got = got + #push
    if bytes >= ctx.maxBytes then return out, b + owedLen, expired, redis.call('LLEN', queue) > 0 end
  end
  -- A full page may have left more in the queue (acked ids skipped above make the page look short).
  return out, b + owedLen, expired, got >= limit and redis.call('LLEN', queue) > 0
end
