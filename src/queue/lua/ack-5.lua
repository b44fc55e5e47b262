--[[
  Acknowledges messages of a user, whichever socket acked them, and reads the next ones for
  the acking socket in the same call. Acks come mostly in order: the acked head of owed is
  trimmed in one step (its position base moves on); an id acked out of order is checked to be
  owed and remembered in the state's 'x' until the head reaches it. Ids that are not owed are
  ignored. The other instances holding sockets of the user are told, so they free room.

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

local owed, state = KEYS[2], KEYS[3]
local prefix, me, user = argString(1), argString(2), argString(3)
local readPos, limit, counterTtl = argNumber(4), argNumber(5), argNumber(9)
local ctx = { channel = argString(6), now = argNumber(7), cutoff = argNumber(8), idPrefix = argString(10), maxBytes = argNumber(12) }
local st = readState(state)
local want, nwant = {}, 0
for i = 13, #ARGV, 2 do
  local pos = argNumber(i + 1)
  if not want[ARGV[i]] then
    want[ARGV[i]] = pos
    nwant = nwant + 1
  end
end

-- The head: trimmed while each entry is acked now or was acked out of order before.
local acked = {}
local details = ARGV[11] == '1' and {} or nil
local function note(id, entry)
  acked[#acked + 1] = id
  if details then
    details[#details + 1] = id
    details[#details + 1] = envelopeTs(entry) or 0
    details[#details + 1] = envelopeChannel(entry) or ''
  end
end
local head = redis.call('LRANGE', owed, 0, nwant + st.nacked - 1)
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
