--[[
  Routes a batch of published messages, each to one user: made owed (and
  announced to every instance holding a socket of the user) when the user has a
  connection and an empty queue, appended to the user's queue otherwise. One script per batch, so
  "deliver or queue" is decided atomically against presence.
  Past the cap (ARGV[3] messages, 0 = none) the oldest message is dropped, or the
  new one refused; either way the user's dropped counter says so at next identify.

  KEYS[1]            message id counter
  KEYS[2]            index of non-empty queues (zset user -> ts of the oldest entry)
  KEYS[3 + 5(i-1)..] per message i: queue, owed, owed data, conns, dropped counter
  ARGV[1]            instance channel prefix
  ARGV[2]            receive time (ms since the epoch)
  ARGV[3]            cap on a user's queue (and on what a user is owed), 0 for none
  ARGV[4]            'drop-oldest' or 'reject'
  ARGV[5]            time to live of a dropped counter (ms), 0 for none
  ARGV[6]            the calling instance: it delivers its own sockets' messages from this
                     script's answer, so no notice is published to it
  ARGV[7 + 3(i-1)..] per message i: user id, channel (JSON string), payload (JSON string)

  Returns: {delivered, queued, dropped, outcome, first id - 1}; outcome has one character per
  message: '1' delivered, 'l' delivered and the caller holds a socket of the user, '0' queued,
  'D' / 'd' / 'Q' the same as '1' / 'l' / '0' after dropping older ones, 'x' refused,
  'w' queued behind a queue that connected sockets are still reading ('s': the caller holds one).
  Message i's id is (first id - 1) + i.
]]
local prefix, ts, cap, reject, counterTtl, caller = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == 'reject', tonumber(ARGV[5]), ARGV[6]
local count = (#KEYS - 2) / 5
local first = redis.call('INCRBY', KEYS[1], count) - count
local notices = {}
local synced = {}
local delivered, queued, dropped = 0, 0, 0
local flags = {}

local function drop(counter, n)
  redis.call('INCRBY', counter, n)
  if counterTtl > 0 then redis.call('PEXPIRE', counter, counterTtl) end
  dropped = dropped + n
end

for i = 1, count do
  local k, a = 3 + (i - 1) * 5, 7 + (i - 1) * 3
  local queue, owed, data, conns, counter = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local id = tostring(first + i)
  local user = ARGV[a]
  local envelope = '{"rm":{"id":"' .. id .. '","channel":' .. ARGV[a + 1] ..
    ',"payload":' .. ARGV[a + 2] .. ',"ts":' .. ts .. '}}'
  local instances = redis.call('HVALS', conns)
  local qlen = redis.call('LLEN', queue)
  -- Owed while a socket is connected and the queue is drained; queued otherwise, behind what
  -- waits (sockets take the queue over as they read, so order holds).
  local owe = #instances > 0 and qlen == 0
  local size = cap > 0 and (owe and redis.call('ZCARD', owed) or qlen) or 0

  if cap > 0 and size >= cap and reject then
    drop(counter, 1)
    flags[i] = 'x'
  else
    local trimmed = cap > 0 and size >= cap
    if trimmed then
      local excess = size - cap + 1
      if owe then
        local oldest = redis.call('ZPOPMIN', owed, excess)
        for j = 1, #oldest, 2 do redis.call('HDEL', data, oldest[j]) end
      else
        redis.call('LTRIM', queue, excess, -1)
      end
      drop(counter, excess)
    end
    local mine = false
    if owe then
      redis.call('ZADD', owed, first + i, id)
      redis.call('HSET', data, id, envelope)
      delivered = delivered + 1
    else
      redis.call('RPUSH', queue, envelope)
      redis.call('ZADD', KEYS[2], 'NX', ts, user)
      queued = queued + 1
    end
    -- Tell the instances holding sockets of the user: the message itself when it is owed,
    -- 's' (read again) when it waits in a queue they are still taking over.
    local line = owe and ('m|' .. user .. '|' .. id .. '|' .. envelope) or ('s|' .. user)
    local seen = {}
    for _, instance in ipairs(instances) do
      local key = owe and instance or (instance .. '|' .. user)
      if instance == caller then
        mine = true
      elseif not seen[instance] and not synced[key] then
        seen[instance] = true
        if not owe then synced[key] = true end
        local list = notices[instance]
        if not list then list = {}; notices[instance] = list end
        list[#list + 1] = line
      end
    end
    if owe then
      if mine then flags[i] = trimmed and 'd' or 'l' else flags[i] = trimmed and 'D' or '1' end
    elseif #instances > 0 then
      flags[i] = mine and 's' or 'w'
    else
      flags[i] = trimmed and 'Q' or '0'
    end
  end
end

-- One notice per instance per batch; lines never contain a raw newline (JSON escapes it).
for instance, lines in pairs(notices) do
  redis.call('PUBLISH', prefix .. instance, table.concat(lines, '\n'))
end
return {delivered, queued, dropped, table.concat(flags), first}
