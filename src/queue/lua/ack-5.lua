--[[
  Acknowledges messages of a user, whichever socket acked them (includes/ack.lua), and reads
  the next ones for the acking socket in the same call (acks.lua takes the acks of many users
  that need no read). The other instances holding sockets of the user are told, so they free room.

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter   KEYS[5] inbox mark (unused)
  ARGV[1] instance channel prefix   ARGV[2] this instance   ARGV[3] user id
  ARGV[4] read position for the acking socket, -1 for no read   ARGV[5] how many to read at most
  ARGV[6] the user's channel (JSON string)   ARGV[7] now (ms)   ARGV[8] queue expiry cutoff (0 for none)
  ARGV[9] time to live of the dropped counter (ms)   ARGV[10] id prefix for raw entries
  ARGV[11] '1' to also return what was acked (for events), else '0'
  ARGV[12] most bytes of entries to read (one entry at least)
  ARGV[13..] pairs: message id, its position as the acking instance knows it (-1 if unknown)

  Returns: {acked count, 1 if a notify was written in the user's absence (see notify-5.lua),
            more (0/1), next position, position1, envelope1, ...}, and with
  ARGV[11] = '1' one last element: {id1, ts1, channel1, ...} of the messages acked by this call
]]
--- @include "args"
--- @include "envelope"
--- @include "state"
--- @include "take"
--- @include "notices"
--- @include "ack"

local owed, state = KEYS[2], KEYS[3]
local prefix, me, user = argString(1), argString(2), argString(3)
local readPos, limit, counterTtl = argNumber(4), argNumber(5), argNumber(9)
local ctx = { channel = argString(6), now = argNumber(7), cutoff = argNumber(8), idPrefix = argString(10), maxBytes = argNumber(12) }
local st = readState(state)
local want, nwant = wantedIds(13, #ARGV)

local details = ARGV[11] == '1' and {} or nil
local acked = ackOwed(owed, state, st, want, redis.call('LRANGE', owed, 0, ackHeadEnd(st, nwant)), details)

if #acked > 0 then
  local line
  for _, instance in ipairs(st.instances) do
    if instance ~= me then
      line = line or noticeAcked(user, acked)
      redis.call('PUBLISH', prefix .. instance, line)
    end
  end
end

local out, nextPos, more = {}, -1, false
if readPos >= 0 then
  local expired
  out, nextPos, expired, more = take(KEYS[1], owed, st, readPos, limit, ctx)
  countDropped(KEYS[4], expired, counterTtl)
end
table.insert(out, 1, nextPos)
table.insert(out, 1, more and 1 or 0)
table.insert(out, 1, st.notified and 1 or 0)
table.insert(out, 1, #acked)
if details then out[#out + 1] = details end
return out
