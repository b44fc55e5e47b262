--[[
  Unregisters connections of a user: one connection, or every connection of one instance
  (ARGV[1] = '*', when an instance is found dead). When no connection is left, owed messages
  go back to the head of the queue in their original order, ahead of anything queued since,
  marked as sent (so neither their ttl nor a collapse key removes them any more): at most
  ARGV[3] per call, from the tail of owed, so what is still owed stays ahead of what went
  back. The caller calls again while `more` says so; any call with no connection left
  carries on (after a crash half way, the reaper's or the next detach), and a socket that
  attaches in between reads what is still owed first, then the queue: order and
  at-least-once hold at every step.

  Worst case per call: HGETALL of the state (connections, ids acked out of order), LRANGE and
  LPUSH of ARGV[3] entries, an LTRIM of owed's tail.

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter   KEYS[5] inbox mark (unused)
  ARGV[1] connection id, or '*'   ARGV[2] instance id   ARGV[3] most owed entries requeued per call

  Returns: {requeued count, connections left, ts of the queue's head (0 if none), connections
            removed (0 left and 1+ removed: the user went offline), 1 if owed entries are left to requeue,
            1 if the user stopped looking (see includes/state.lua), else 0}
]]
--- @include "args"
--- @include "envelope"
--- @include "state"

local queue, owed, state = KEYS[1], KEYS[2], KEYS[3]
local conn, instance, page = argString(1), argString(2), argNumber(3)
if page < 1 then argError(3, 'a positive number') end
local st = readState(state)
local left = 0
for c, inst in pairs(st.conns) do
  if c == conn or (conn == '*' and inst == instance) then
    redis.call('HDEL', state, 'c:' .. c, 'h:' .. c)
    st.conns[c] = nil
  else
    left = left + 1
  end
end
local removed = st.nconns - left
local changed = noteLooking(state, st) and 1 or 0
if left > 0 then return {0, left, 0, removed, 0, changed} end
local n = redis.call('LLEN', owed)
if removed == 0 and n == 0 then return {0, 0, 0, 0, 0, changed} end

-- The newest `page` owed entries go back; LPUSH puts its last argument first, so push from the newest back.
local take = math.min(n, page)
local entries = redis.call('LRANGE', owed, n - take, n - 1)
local back = {}
for i = #entries, 1, -1 do
  local id = envelopeId(entries[i])
  if id and st.acked[id] then
    st.acked[id] = nil
    st.nacked = st.nacked - 1
  else
    back[#back + 1] = markSent(entries[i])
  end
end
callChunked('LPUSH', queue, back)
local head = redis.call('LINDEX', queue, 0)
local headTs = head and (envelopeTs(head) or 0) or 0
if take < n then
  -- Owed keeps its head position 'b'; ids acked out of order that went with this page leave 'x'.
  redis.call('LTRIM', owed, 0, n - take - 1)
  if st.nacked > 0 then redis.call('HSET', state, 'x', joinKeys(st.acked)) else redis.call('HDEL', state, 'x') end
  return {#back, 0, headTs, removed, 1, changed}
end
redis.call('DEL', owed, state)
-- Retracts the next socket must hear of outlive the connections.
if st.r then redis.call('HSET', state, 'r', st.r) end
-- The route epoch outlives the connections while messages wait, so a stale route stays fenced.
if head then
  if st.e then redis.call('HSET', state, 'e', st.e) end
  if st.t then redis.call('HSET', state, 't', st.t) end
  -- When the user stopped looking: an absence is counted from then.
  redis.call('HSET', state, 'L', '0|' .. st.since)
end
-- An absence with a notify written ends with a `resolved`, whatever happens to the keys.
if st.notified then redis.call('HSET', state, 'N', st.notified.at .. '|' .. st.notified.count) end
return {#back, 0, headTs, removed, 0, changed}
