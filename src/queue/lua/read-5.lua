--[[
  Reads owed messages in order from a position on, for a socket that has room; past the
  end of what is owed, the next queue entries become owed (see includes/take.lua).

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter   KEYS[5] inbox mark (unused)
  ARGV[1] position   ARGV[2] how many at most   ARGV[3] the user's channel (JSON string)
  ARGV[4] now (ms)   ARGV[5] queue expiry cutoff (ms; 0 for none)
  ARGV[6] time to live of the dropped counter (ms)   ARGV[7] id prefix for raw entries (unique to the call)
  ARGV[8] most bytes of entries to read (one entry at least)

  Returns: {more (0/1), next position, position1, envelope1, position2, envelope2, ...}
]]
--- @include "args"
--- @include "envelope"
--- @include "state"
--- @include "take"

local pos, limit, counterTtl = argNumber(1), argNumber(2), argNumber(6)
local ctx = { channel = argString(3), now = argNumber(4), cutoff = argNumber(5), idPrefix = argString(7), maxBytes = argNumber(8) }
local st = readState(KEYS[3])
local out, nextPos, expired, more = take(KEYS[1], KEYS[2], st, pos, limit, ctx)
countDropped(KEYS[4], expired, counterTtl)
table.insert(out, 1, nextPos)
table.insert(out, 1, more and 1 or 0)
return out
