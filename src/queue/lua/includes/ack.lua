-- Acking a user's ids, for ack-5.lua (one user, with a read for the acking socket) and
-- acks.lua (the users of one slot). Acks come mostly in order: the acked head of owed is
-- trimmed in one step (its position base moves on); an id acked out of order is checked to be
-- owed and remembered in the state's 'x' until the head reaches it. Ids that are not owed are
-- ignored.

-- The ids ARGV[from..to] names in pairs (id, its owed position as the caller knows it, -1 if
-- unknown), each once, and how many.
local function wantedIds(from, to)
  local want, n = {}, 0
  for i = from, to, 2 do
    local pos = argNumber(i + 1)
    if not want[ARGV[i]] then
      want[ARGV[i]] = pos
      n = n + 1
    end
  end
  return want, n
end

-- How far into owed an ack of n ids may trim: the LRANGE end of the head ackOwed is given.
local function ackHeadEnd(st, n) return n + st.nacked - 1 end

-- Acks `want` in owed (head: its entries 0..ackHeadEnd, as read before any write). Answers
-- the ids acked by this call; with `details` a table, appends id, ts, channel of each to it.
local function ackOwed(owed, state, st, want, head, details)
  local acked = {}
  local function note(id, entry)
    acked[#acked + 1] = id
    if details then
      details[#details + 1] = id
      details[#details + 1] = envelopeTs(entry) or 0
      details[#details + 1] = envelopeChannel(entry) or ''
    end
  end
  -- The head: trimmed while each entry is acked now or was acked out of order before.
  local trimmed, xChanged = 0, false
  for i = 1, #head do
    local id = envelopeId(head[i])
    if not id or not (want[id] or st.acked[id]) then break end
    trimmed = trimmed + 1
    if want[id] and not st.acked[id] then note(id, head[i]) end -- acked out of order before: counted then
    want[id] = nil
    if st.acked[id] then
      st.acked[id] = nil
      st.nacked = st.nacked - 1
      xChanged = true
    end
  end
  if trimmed > 0 then
    redis.call('LTRIM', owed, trimmed, -1)
    st.b = st.b + trimmed
    redis.call('HSET', state, 'b', st.b)
  end

  -- The rest are acked out of order: each must be owed (at its position, or found by a bounded scan).
  local scanned
  for id, pos in pairs(want) do
    local found = false
    if pos >= st.b then
      local entry = redis.call('LINDEX', owed, pos - st.b)
      if entry and envelopeId(entry) == id then found = entry end
    end
    if not found then
      if not scanned then
        scanned = {}
        for _, e in ipairs(redis.call('LRANGE', owed, 0, 9999)) do
          local eid = envelopeId(e)
          if eid then scanned[eid] = e end
        end
      end
      found = scanned[id] or false
    end
    if found and not st.acked[id] then
      st.acked[id] = true
      st.nacked = st.nacked + 1
      xChanged = true
      note(id, found)
    end
  end
  if xChanged then
    if st.nacked > 0 then redis.call('HSET', state, 'x', joinKeys(st.acked)) else redis.call('HDEL', state, 'x') end
  end
  return acked
end
