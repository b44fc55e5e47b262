--[[
  One user's absence, decided in one step (NOTIFY_AFTER_SECONDS; the sweep of NotifyService
  calls it when the user's check falls due). The user is looking while a connection has not
  said it is hidden ('L' in the state, kept by attach, detach and visibility). An absence
  starts when the user has not been looking for `after` and a message has waited that long:
  'N' (notified at|count) is set and 'notify' answered. Within it, with `repeat` > 0, a further
  'notify' once `repeat` has passed since the last one if the count differs. It ends when
  nothing waits, or after `after` of looking without interruption: 'N' goes, 'resolved' is
  answered. An absence that ended before its notify leaves nothing. The caller writes the
  event; 'N' makes two checks of one absence write one notify.

  Worst case: HGETALL of the state, two LLEN; when a notify is written or the user is away,
  LRANGE of ARGV[3] entries at the head of owed and of the queue, and at the tail of each.

  KEYS[1] queue   KEYS[2] owed   KEYS[3] state   KEYS[4] dropped counter (unused)   KEYS[5] inbox mark (unused)
  ARGV[1] after (ms, > 0)   ARGV[2] repeat (ms, 0 for none)   ARGV[3] most entries scanned at each end of each list

  Returns: {'notify' | 'resolved' | '', next check (ms on Redis's clock, 0 for none), count,
            first id, last id ('' when none has an id), collapse keys (JSON array), age (s)}
]]
--- @include "args"
--- @include "envelope"
--- @include "state"

local queue, owed, state = KEYS[1], KEYS[2], KEYS[3]
local after, rep, scan = argNumber(1), argNumber(2), argNumber(3)
if after <= 0 then argError(1, 'a positive number') end
if scan < 1 then argError(3, 'a positive number') end
local now = nowMs()
local st = readState(state)
local count = math.max(0, redis.call('LLEN', queue) + redis.call('LLEN', owed) - st.nacked)

local function answer(action, nextAt, facts)
  facts = facts or {}
  return {action, nextAt, count, facts.first or '', facts.last or '', facts.keys or '[]', facts.age or 0}
end

local function resolve()
  redis.call('HDEL', state, 'N')
  if count == 0 and st.nconns == 0 and not st.r then redis.call('DEL', state) end
  return answer('resolved', 0)
end

if count == 0 then
  if st.notified then return resolve() end
  return answer('', 0)
end

if st.looking then
  if not st.notified then return answer('', 0) end
  if now - st.since >= after then return resolve() end
  return answer('', st.since + after)
end

-- Away since st.since (0: never looked). The waiting messages, oldest first: owed (less what
-- was acked out of order), then the queue; bounded scans at both ends.
local waiting = {}
local function add(entries, from, to, step)
  for i = from, to, step do
    local id = envelopeId(entries[i])
    if not (id and st.acked[id]) then waiting[#waiting + 1] = entries[i] end
  end
end
local owedHead = redis.call('LRANGE', owed, 0, scan - 1)
local queueHead = redis.call('LRANGE', queue, 0, scan - 1)
add(owedHead, 1, #owedHead, 1)
add(queueHead, 1, #queueHead, 1)
local oldest, first
for _, entry in ipairs(waiting) do
  local ts = envelopeTs(entry)
  if ts and (not oldest or ts < oldest) then oldest = ts end
  first = first or envelopeId(entry)
end
-- A raw entry (no ts) at the head has waited since at least it was found: count it as due.
oldest = oldest or (now - after)
local dueAt = math.max(st.since, oldest) + after

if st.notified then
  if rep <= 0 then return answer('', 0) end
  if now < st.notified.at + rep then return answer('', st.notified.at + rep) end
  if count == st.notified.count then return answer('', 0) end
elseif now < dueAt then
  return answer('', dueAt)
end

-- A notify: the newest waiting message with an id, and the distinct collapse keys (at most 10).
local queueTail = redis.call('LRANGE', queue, -scan, -1)
local owedTail = redis.call('LRANGE', owed, -scan, -1)
local last
for _, list in ipairs({queueTail, owedTail}) do
  for i = #list, 1, -1 do
    local id = envelopeId(list[i])
    if id and not st.acked[id] then
      last = id
      break
    end
  end
  if last then break end
end
local keys, seen = {}, {}
for _, list in ipairs({waiting, queueTail}) do
  for _, entry in ipairs(list) do
    if #keys >= 10 then break end
    local key = envelopeCollapseKey(entry)
    if key and not seen[key] then
      seen[key] = true
      keys[#keys + 1] = key
    end
  end
end
redis.call('HSET', state, 'N', now .. '|' .. count)
return answer('notify', rep > 0 and now + rep or 0, {
  first = first, last = last, keys = '[' .. table.concat(keys, ',') .. ']', age = math.floor(math.max(0, now - oldest) / 1000),
})
