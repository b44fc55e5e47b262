--[[
  Unregisters connections of a user: one connection, or every connection of one instance
  (ARGV[1] = '*', when an instance is found dead). When no connection is left, every owed
  message goes back to the head of the queue in its original order, ahead of anything queued
  since, marked as sent (so neither its ttl nor a collapse key removes it any more).

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter   KEYS[5] inbox mark (unused)
  ARGV[1] connection id, or '*'   ARGV[2] instance id

  Returns: {requeued count, connections left, ts of the queue's head (0 if none), connections
            removed (0 left and 1+ removed: the user went offline)}
]]
--- @include "envelope"
--- @include "state"

local queue, owed, state = KEYS[1], KEYS[2], KEYS[3]
local conn, instance = ARGV[1], ARGV[2]
local st = readState(state)
local left = 0
for c, inst in pairs(st.conns) do
  if c == conn or (conn == '*' and inst == instance) then
    redis.call('HDEL', state, 'c:' .. c)
  else
    left = left + 1
  end
end
if left > 0 or st.nconns == 0 then return {0, left, 0, st.nconns - left} end

-- LPUSH puts its last argument first: push from the newest back to the oldest, in chunks.
local entries = redis.call('LRANGE', owed, 0, -1)
local back = {}
for i = #entries, 1, -1 do
  local id = envelopeId(entries[i])
  if not (id and st.acked[id]) then back[#back + 1] = markSent(entries[i]) end
end
callChunked('LPUSH', queue, back)
redis.call('DEL', owed, state)
-- The route epoch outlives the connections while messages wait, so a stale route stays fenced.
local head = redis.call('LINDEX', queue, 0)
if head then
  if st.e then redis.call('HSET', state, 'e', st.e) end
  if st.t then redis.call('HSET', state, 't', st.t) end
end
return {#back, 0, head and (envelopeTs(head) or 0) or 0, st.nconns}
