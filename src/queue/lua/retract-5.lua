--[[
  Retracts one message of a user (DELETE /v1/messages/<id>). Owed (sent, or about to be sent,
  and not acked): it is marked acked out of order (the state's 'x'), so owed positions hold, no
  socket reads it again and a detach does not requeue it; the acked head of owed is trimmed as
  an ack trims it. Every instance holding a socket of the user gets 'r|user|id' and tells the
  sockets that were sent it. Queued: it is removed; if it was sent before (it went back to the
  queue when its socket closed), the user's sockets are told ('r|user|id|*': every socket, as
  any may show it), or with no socket the id is kept in the state's 'r' for the next one
  (attach-5.lua answers it, once). With no socket, a retracted owed message is kept there too.

  Worst case: HGETALL of the state; the user's owed and queue read from the tail in pages of
  1,000 until the id is found (bounded by that user's owed + queue length, never by other
  users' data: on a loaded 2-core box about 10 ms for an id at the head of, or absent from,
  a queue of 10,000 100-byte messages, 100 ms for 100,000; 2 ms at the tail); one LREM from
  the tail; an LTRIM of owed's acked head.

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter (unused)   KEYS[5] inbox mark (unused)
  ARGV[1] instance channel prefix   ARGV[2] user id   ARGV[3] message id   ARGV[4] most ids kept in 'r'

  Returns: 'q' removed from the queue, never sent; 's' it was sent; '' not found (acked, retracted
  already, or never stored for the user)
]]
--- @include "args"
--- @include "envelope"
--- @include "state"
--- @include "notices"

local queue, owed, state = KEYS[1], KEYS[2], KEYS[3]
local prefix, user, id, keep = argString(1), argString(2), argString(3), argNumber(4)
local st = readState(state)
if st.acked[id] then return '' end

-- The last entry of a list with this id, or nil. Looked for from the tail, a page at a time:
-- a message taken back is usually a recent one, and recent ones are at the tail.
local function find(key)
  local to = redis.call('LLEN', key) - 1
  while to >= 0 do
    local from = math.max(0, to - 999)
    local entries = redis.call('LRANGE', key, from, to)
    for i = #entries, 1, -1 do
      if envelopeId(entries[i]) == id then return entries[i] end
    end
    to = from - 1
  end
  return nil
end

-- Sent to sockets that are gone: the next socket hears of it (the oldest go past `keep`).
local function remember()
  local ids = {}
  if st.r then for r in string.gmatch(st.r, '[^,]+') do if r ~= id then ids[#ids + 1] = r end end end
  ids[#ids + 1] = id
  redis.call('HSET', state, 'r', table.concat(ids, ',', math.max(1, #ids - keep + 1)))
end

local function tell(line)
  for _, instance in ipairs(st.instances) do redis.call('PUBLISH', prefix .. instance, line) end
end

if find(owed) then
  st.acked[id] = true
  st.nacked = st.nacked + 1
  -- The head of owed, while acked out of order, goes (its position base moves on), as in ack-5.lua.
  local trimmed = 0
  for _, entry in ipairs(redis.call('LRANGE', owed, 0, st.nacked - 1)) do
    local eid = envelopeId(entry)
    if not (eid and st.acked[eid]) then break end
    st.acked[eid] = nil
    st.nacked = st.nacked - 1
    trimmed = trimmed + 1
  end
  if trimmed > 0 then
    redis.call('LTRIM', owed, trimmed, -1)
    redis.call('HSET', state, 'b', st.b + trimmed)
  end
  if st.nacked > 0 then redis.call('HSET', state, 'x', joinKeys(st.acked)) else redis.call('HDEL', state, 'x') end
  if st.nconns > 0 then tell(noticeRetracted(user, id, false)) else remember() end
  return 's'
end

local entry = find(queue)
if not entry then return '' end
redis.call('LREM', queue, -1, entry)
if neverSent(entry) then return 'q' end
if st.nconns > 0 then tell(noticeRetracted(user, id, true)) else remember() end
return 's'
