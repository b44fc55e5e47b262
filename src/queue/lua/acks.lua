--[[
  Acknowledges the messages of many users in one call (includes/ack.lua), for acks that need
  no read for the acking socket (ack-5.lua does one user with a read): at a steady rate nearly
  every ack frame acks a message or two, so one call per tick (per slot on a Redis Cluster)
  instead of one per user. The other instances holding sockets of a user are told (one PUBLISH
  per instance per call), so they free room.

  A key of another type under our names would make a command fail after the groups before it
  were written: so each group makes its reads first, under pcall (its state, the head of its
  owed list: the only keys it writes), and a group whose read meets a key of another type is
  skipped with nothing of it written (answer -1 and why). The arguments are checked before any
  write. So nothing fails after a write, and a failed call wrote nothing.

  Cost: per group O(1) commands and O(ids + acked out of order) work (an id acked out of order
  and not at its position: one bounded scan of owed, at most 10,000 entries, once per group),
  plus one PUBLISH per instance told.

  KEYS[2(g-1)+1..2g]  group g: owed, state
  ARGV[1] instance channel prefix   ARGV[2] this instance
  ARGV[3] '1' to also return what was acked (for events), else '0'
  then per group: user id, count n of ids, and n pairs: message id, its position as the acking
  instance knows it (-1 if unknown)

  Returns: per group three elements: how many were acked (-1: a key of the group is unusable),
  1 if a notify was written in the user's absence (see notify-5.lua) else 0, and {id1, ts1,
  channel1, ...} of the messages acked by this call (empty unless ARGV[3] = '1'; for -1, why).
]]
--- @include "args"
--- @include "envelope"
--- @include "state"
--- @include "notices"
--- @include "ack"
--- @include "reads"

local prefix, me, wantDetails = argString(1), argString(2), argString(3) == '1'
local at, groups = 4, 0
while at <= #ARGV do
  groups = groups + 1
  argString(at)
  local n = argNumber(at + 1)
  for i = at + 2, at + 1 + 2 * n, 2 do
    argString(i)
    argNumber(i + 1)
  end
  at = at + 2 + 2 * n
end
if #KEYS ~= 2 * groups or at ~= #ARGV + 1 then
  error(redis.error_reply('ERR ' .. #KEYS .. ' keys and ' .. #ARGV .. ' arguments do not make whole groups'))
end

local out, notices = {}, {}
local a, g = 4, 0
while a <= #ARGV do
  g = g + 1
  local owed, state = KEYS[2 * g - 1], KEYS[2 * g]
  local user, n = ARGV[a], tonumber(ARGV[a + 1])
  local want, nwant = wantedIds(a + 2, a + 1 + 2 * n)
  a = a + 2 + 2 * n
  local all = redis.pcall('HGETALL', state)
  local st = not failed(all) and parseState(all)
  local head = st and redis.pcall('LRANGE', owed, 0, ackHeadEnd(st, nwant))
  if not st or failed(head) then
    out[#out + 1] = -1
    out[#out + 1] = 0
    out[#out + 1] = not st and wrongType(state, 'hash') or wrongType(owed, 'list')
  else
    local details = wantDetails and {} or nil
    local acked = ackOwed(owed, state, st, want, head, details)
    if #acked > 0 then
      local line
      for _, instance in ipairs(st.instances) do
        if instance ~= me then
          line = line or noticeAcked(user, acked)
          noticeTo(notices, instance, line)
        end
      end
    end
    out[#out + 1] = #acked
    out[#out + 1] = st.notified and 1 or 0
    out[#out + 1] = details or {}
  end
end

-- One notice per instance per call; lines never contain a raw newline.
publishNotices(prefix, notices)
return out
