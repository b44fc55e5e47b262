--[[
  Drops the entries at the head of a user's queue that are older than the queue's time to
  live, counting them for the next `ready`. An emptied queue of a user with no connection
  leaves no state behind (unless retracts wait to be told to its next socket).

  KEYS[1] queue   KEYS[2] owed (unused)   KEYS[3] state   KEYS[4] dropped counter   KEYS[5] inbox mark (unused)
  ARGV[1] expiry cutoff (ms)   ARGV[2] now (ms)   ARGV[3] time to live of the dropped counter (ms)

  Returns: {expired count, entries left, ts of the new head (0 if none, or raw)}
]]
--- @include "args"
--- @include "envelope"
--- @include "state"

local cutoff, now, counterTtl = argNumber(1), argNumber(2), argNumber(3)
local expired = 0
local head = redis.call('LINDEX', KEYS[1], 0)
while head and expired < 10000 and isExpired(head, cutoff, now) do
  redis.call('LPOP', KEYS[1])
  expired = expired + 1
  head = redis.call('LINDEX', KEYS[1], 0)
end
countDropped(KEYS[4], expired, counterTtl)
-- No queue and no connection: only the route epoch and the ttl hint would be left (retracts
-- the next socket must hear of, and an absence's notify, stay).
if not head then
  local st = readState(KEYS[3])
  if st.nconns == 0 and not st.r and not st.notified then redis.call('DEL', KEYS[3]) end
end
return {expired, redis.call('LLEN', KEYS[1]), head and (envelopeTs(head) or 0) or 0}
