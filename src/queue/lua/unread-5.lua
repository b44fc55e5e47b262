--[[
  Which of a user's messages are still unacked: owed and not acked out of order, or queued (a
  queued message has not been acked). For the `unread` events: a message not found was acked,
  dropped, expired or replaced. Reads only; scans at most ARGV[1] entries of owed, then as many
  of the queue, oldest first (both lists are in age order, and the sweep asks oldest first).

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter (unused)   KEYS[5] inbox mark (unused)
  ARGV[1] most entries scanned per list   ARGV[2..] message ids

  Returns: {id1, ts1, channel1, ...} of the ids found
]]
--- @include "envelope"
--- @include "state"

local st = readState(KEYS[3])
local want, left = {}, 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if not want[id] and not st.acked[id] then
    want[id] = true
    left = left + 1
  end
end

local out, limit = {}, tonumber(ARGV[1])
for _, key in ipairs({KEYS[2], KEYS[1]}) do
  if left == 0 then break end
  for _, entry in ipairs(redis.call('LRANGE', key, 0, limit - 1)) do
    local id = envelopeId(entry)
    if id and want[id] then
      want[id] = nil
      left = left - 1
      out[#out + 1] = id
      out[#out + 1] = envelopeTs(entry) or 0
      out[#out + 1] = envelopeChannel(entry) or ''
      if left == 0 then break end
    end
  end
end
return out
