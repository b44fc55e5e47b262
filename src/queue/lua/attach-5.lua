--[[
  Registers a connection. The queue is not moved here: sockets take it over in chunks as they
  read (read-5.lua), so an identify costs the same with ten queued messages or a million.
  Expired entries at the head of the queue are dropped and counted first (at most 10,000),
  and when a queued message with its own ttl may have expired (the state's 't'), the queue
  is swept of those, a page of ARGV[8] entries here and the rest by sweep-5.lua from the
  position answered, so `ready` counts only what will be delivered.

  Worst case: HGETALL of the state; 10,000 LPOPs, or one sweep page (ARGV[8] entries read,
  an LSET per expired one, one LREM; see includes/sweep.lua).

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter   KEYS[5] inbox mark (unused)
  ARGV[1] connection id   ARGV[2] instance id   ARGV[3] user id   ARGV[4] instance channel prefix
  ARGV[5] queue expiry cutoff (ms; 0 for none)   ARGV[6] most connections per user (0: no limit)
  ARGV[7] now (ms)   ARGV[8] entries per sweep page   ARGV[9] '0' when the socket said it is not visible, else (or absent) visible
  ARGV[10] how many owed messages to read for the socket in the same call (0 or absent: none; nor
  while a sweep goes on)   ARGV[11] the user's channel (JSON string)   ARGV[12] id prefix for raw entries
  ARGV[13] most bytes of entries to read (one entry at least)

  Returns: {messages owed (owed + queued), dropped since the last identify, first owed position,
            connections replaced (flat: conn, instance, ...), connections the user had before
            this one (0: it is the user's first), entries that expired here, where the sweep
            goes on (-1: done), the earliest ttl expiry the sweep kept so far (0: none),
            ids retracted since the last identify after they were sent (comma-separated, '' for none),
            1 if the user started or stopped looking (see includes/state.lua), else 0,
            and the read as read-5.lua answers it: {more (0/1), next position, position1, envelope1, ...}}
  (entries the read found expired are counted in dropped, not in owed). The read saves an identify
  a round trip and a script call: its first messages come with its registration.
]]

--- @include "args"
--- @include "envelope"
--- @include "state"
--- @include "sweep"
--- @include "notices"
--- @include "take"

local queue, owed, state = KEYS[1], KEYS[2], KEYS[3]
local conn, instance, user, prefix = argString(1), argString(2), argString(3), argString(4)
local cutoff, maxConns, now, page = argNumber(5), argNumber(6), argNumber(7), argNumber(8)
if page < 1 then argError(8, 'a positive number') end
local visible = ARGV[9] ~= '0' -- absent: visible
local readLimit = ARGV[10] and argNumber(10) or 0 -- absent: no read
local ctx = readLimit > 0 and { channel = argString(11), now = now, cutoff = cutoff, idPrefix = argString(12), maxBytes = argNumber(13) }
local st = readState(state)
local registered = st.conns[conn] ~= nil
redis.call('HSET', state, 'c:' .. conn, instance)
if visible and st.hidden[conn] then
  redis.call('HDEL', state, 'h:' .. conn)
elseif not visible then
  redis.call('HSET', state, 'h:' .. conn, '1')
end
-- Past the per-user limit the oldest connections go (connection ids sort by creation time).
local replaced = {}
-- A connection registered already (attaching again after a Redis reconnect) is not one more.
local excess = st.nconns + (registered and 0 or 1) - maxConns
if maxConns > 0 and excess > 0 then
  local ids = {}
  for c in pairs(st.conns) do if c ~= conn then ids[#ids + 1] = c end end
  table.sort(ids)
  for i = 1, excess do
    local owner = st.conns[ids[i]]
    redis.call('HDEL', state, 'c:' .. ids[i], 'h:' .. ids[i])
    st.conns[ids[i]] = nil
    replaced[#replaced + 1] = ids[i]
    replaced[#replaced + 1] = owner
    redis.call('PUBLISH', prefix .. owner, noticeReplaced(user, ids[i]))
  end
end

local expired, sweepFrom, earliest = 0, -1, nil
if st.t and st.t <= now then
  -- A message with its own ttl may have expired anywhere in the queue: its first page here,
  -- the rest by sweep-5.lua calls from sweepFrom on ('t' stays due until the last page).
  local done
  expired, sweepFrom, earliest, done = sweepPage(queue, 0, page, cutoff, now)
  if done then
    sweepDone(state, earliest)
    sweepFrom = -1
  end
else
  -- The queue is in age order: what is past the queue's time to live sits at its head.
  local head = cutoff > 0 and redis.call('LINDEX', queue, 0)
  while head and expired < 10000 and isExpired(head, cutoff, now) do
    redis.call('LPOP', queue)
    expired = expired + 1
    head = redis.call('LINDEX', queue, 0)
  end
end

local dropped = tonumber(redis.call('GETDEL', KEYS[4]) or '0') + expired
local owedCount = redis.call('LLEN', owed) - st.nacked
-- Retracted after they were sent while the user had no socket: this one tells the app, after `ready`.
if st.r then redis.call('HDEL', state, 'r') end
st.conns[conn] = instance
st.hidden[conn] = (not visible) or nil
local lookingChanged = noteLooking(state, st) and 1 or 0
local count = owedCount + redis.call('LLEN', queue)
local read = {}
if readLimit > 0 and sweepFrom < 0 then
  local rows, nextPos, gone, more = take(queue, owed, st, st.b, readLimit, ctx)
  dropped, expired, count = dropped + gone, expired + gone, count - gone
  table.insert(rows, 1, nextPos)
  table.insert(rows, 1, more and 1 or 0)
  read = rows
end
return {count, dropped, st.b, replaced, st.nconns, expired, sweepFrom, earliest or 0, st.r or '', lookingChanged, read}
