--[[
  Stores published messages, each group of them for one user, deciding "deliver or queue"
  atomically against the user's presence: owed (and announced to every instance holding a
  socket of the user) when the user has a connection and an empty queue, appended to the
  queue otherwise (behind what its sockets still take over). One user's keys per group, so
  on a Redis Cluster a call holds the users of one slot; with one Redis, many users.
  Past the cap the oldest messages are dropped, or the new ones refused; either way the
  user's dropped counter says so at the next identify. A newer message with a collapse key
  replaces a queued one with the same key that was never sent: the user's collapse index
  (collapse key -> the envelope queued with it) names it, so the queue is never read; LREM
  looks for it from the tail, where a stream of updates keeps it. The index is emptied when
  the queue is found empty, and expires a queue time to live after its last write (it names
  nothing older); with no queue time to live it waits for the queue to be found empty.
  A group may carry an idempotency record (HTTP path): a repeat with the same body hash
  stores nothing and answers the recorded id; with another hash it stores nothing either.

  A key of another type under our names (an operator's SET, say) would make a command fail
  half way through the call, after the groups before it were written (Redis keeps what a
  script wrote before an error): so each group makes its reads first, under pcall, before its
  first write, and a read that meets a key of another type makes the group 'x' (answer: which
  key, and why) with nothing of it written. Every key a group writes is read first (the dropped
  counter only when the cap may be passed: only then is it written), so after a group's first
  write nothing fails (the arguments are checked before any group, OOM is checked only before a
  script's first write): a call that failed wrote nothing, and retrying its groups one by one
  stores nothing twice.

  Cost: O(groups + messages) commands, each O(1) or O(what it moves); a group's reads are the
  state (HGETALL), the queue's length, the owed list's length when it owes, the collapse index's
  entries for its keys, the inbox mark, the idempotency record and the counter only where used.
  A message is sent once per call however many groups take it, and what its groups share is
  worked out once per run (below): a group's own cost is its keys, its user id and its commands.
  A collapse that replaces costs an LREM from the tail, O(distance of the replaced entry from the
  tail) compared in Redis (an indexed entry that already left the queue: one pass over the queue,
  in Redis, never copied into Lua); owed entries dropped past the cap while ids are acked out of
  order are read once, to keep the rest of those ids skipped.

  KEYS[6(g-1)+1..6g]  group g: queue, owed, state, dropped counter, inbox mark, collapse index;
          after every group's six, the idempotency records the groups name (each one of its user's keys)
  ARGV[1] instance channel prefix   ARGV[2] the calling instance (its sockets' messages come
          back in the answer instead of a notice)   ARGV[3] cap (0 for none)
  ARGV[4] '1' to refuse past the cap, '0' to drop the oldest
  ARGV[5] queue time to live (ms; 0 for none): of the dropped counter and the collapse index
  ARGV[6] m, the call's messages; then per message: collapse key as JSON ('' for none), expiry
          time for a ttl (ms, '' for none), envelope
  then runs of groups that take the same messages, in group order: the run's group count c, the
          route epoch of the caller's shard lease (0: not fenced, for the HTTP and inbox paths),
          inbox entry id ('' for none), the index in KEYS of its first group's idempotency record
          (0 for none; the next groups' follow it), the records' value 'hash|answer', the count n
          of the messages each of its groups takes, their n numbers in the table (1 to m) in order,
          then the c groups' user ids (a fan-out: one run, its message sent once, one argument per member)

  Returns: {outcomes, then for each group with a figure that is not 0 or an answer: its number g,
  first position, dropped, refused, replaced, mine (0/1), answer (why, for 'x')}; a group not
  listed has them all 0 and ''.
  outcomes has one letter per group: 'x' a key of the group is unusable (nothing stored),
  'o' owed, 'q' queued, 'n' queued into an empty queue (to be indexed), 'w' queued behind a
  queue that connected sockets still read, 'f' refused because a newer epoch routed the user
  (the lease moved on), 'd' an inbox entry already stored,
  'r' a repeat of a recorded request (answer: the recorded answer), 'c' a recorded request with
  another body hash (nothing stored).
]]
--- @include "args"
--- @include "envelope"
--- @include "state"
--- @include "notices"
--- @include "reads"

local prefix, caller, cap, reject = argString(1), argString(2), argNumber(3), argString(4) == '1'
local counterTtl = argNumber(5)

-- A count or index: a whole number, at least `least` (not NaN, not infinite).
local function argCount(i, least)
  local v = tonumber(ARGV[i])
  if not v or not (v >= least) or v % 1 ~= 0 then argError(i, 'a whole number from ' .. least) end
  return v
end

-- Every argument is checked before the first write, so a malformed one cannot leave the groups before it stored.
local m = argCount(6, 0)
for i = 8, 6 + 3 * m, 3 do
  if ARGV[i] ~= '' then argNumber(i) end
end
local runs, groups, at = {}, 0, 7 + 3 * m
while at <= #ARGV do
  -- The strings (inbox entry, record value, user ids) need no check: every index up to #ARGV holds one,
  -- and the check after the loop makes sure the last run ends at #ARGV.
  local count, record, n = argCount(at, 1), argCount(at + 3, 0), argCount(at + 5, 0)
  argNumber(at + 1)
  if record ~= 0 and not KEYS[record + count - 1] then argError(at + 3, 'the KEYS index of an idempotency record') end
  for i = at + 6, at + 5 + n do
    if argCount(i, 1) > m then argError(i, 'a message number') end
  end
  runs[#runs + 1] = at
  groups = groups + count
  at = at + 6 + n + count
end
if #KEYS < 6 * groups or at ~= #ARGV + 1 then
  error(redis.error_reply('ERR ' .. #KEYS .. ' keys and ' .. #ARGV .. ' arguments do not make whole groups'))
end

-- Stream ids 'ms-seq' in order: is a at or before b?
local function notAfter(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, bm = tonumber(am), tonumber(bm)
  return am < bm or (am == bm and tonumber(as) <= tonumber(bs))
end

-- What every group of a run takes: owed, all its messages; queued, the last of each collapse key
-- (a later message of the call replaces an earlier one: `within` of them), the keys to index (nil for
-- none: most runs, which then need no more tables) and the earliest expiry.
local function runMessages(at, n)
  local all, latest, earliest, within = {}, nil, nil, 0
  for i = 1, n do
    local k = 4 + 3 * tonumber(ARGV[at + 5 + i])
    all[i] = ARGV[k + 2]
    if ARGV[k] ~= '' then
      latest = latest or {}
      latest[ARGV[k]] = i
    end
  end
  local queued, keys, indexed = all, nil, nil
  if latest then queued, keys, indexed = {}, {}, {} end
  for i = 1, n do
    local k = 4 + 3 * tonumber(ARGV[at + 5 + i])
    local key, expiry = ARGV[k], ARGV[k + 1]
    if key == '' or latest[key] == i then
      if latest then
        queued[#queued + 1] = all[i]
        if key ~= '' then
          keys[#keys + 1] = key
          indexed[#indexed + 1] = key
          indexed[#indexed + 1] = all[i]
        end
      end
      if expiry ~= '' then
        local t = tonumber(expiry)
        if not earliest or t < earliest then earliest = t end
      end
    else
      within = within + 1
    end
  end
  return all, queued, keys, indexed, earliest, within
end

-- A user with no state hash yet (most members of a large group): one parsed state for them all, only read.
local noState
local notices = {}

local outcomes, results, g = {}, { '' }, 0
for _, at in ipairs(runs) do
  local c, epoch, entry, record, idemValue, n = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), ARGV[at + 2], tonumber(ARGV[at + 3]), ARGV[at + 4], tonumber(ARGV[at + 5])
  local every, queued, keys, indexed, earliest, within = runMessages(at, n)
  for k = 1, c do
    g = g + 1
    local queue, owed, state, counter, mark, index = KEYS[6 * g - 5], KEYS[6 * g - 4], KEYS[6 * g - 3], KEYS[6 * g - 2], KEYS[6 * g - 1], KEYS[6 * g]
    local user, idemKey = ARGV[at + 5 + n + k], record > 0 and KEYS[record + k - 1] or nil
    local outcome, position, dropped, refused, replaced, mine, answer = 'q', 0, 0, 0, 0, 0, ''
    -- The group's reads come first, under pcall: a key of another type makes the group 'x' before it writes anything.
    local all = redis.pcall('HGETALL', state)
    local st = not failed(all) and (#all > 0 and parseState(all) or noState or parseState(all))
    if st and #all == 0 then noState = st end
    local marked = st and entry ~= '' and redis.pcall('GET', mark)
    local recorded = st and idemKey and redis.pcall('GET', idemKey)
    local broken = (not st and wrongType(state, 'hash')) or (failed(marked) and wrongType(mark, 'string')) or (failed(recorded) and wrongType(idemKey, 'string'))

    if broken then
      outcome, answer = 'x', broken
    elseif epoch > 0 and st.e and st.e > epoch then
      outcome = 'f'
    elseif marked and notAfter(entry, marked) then
      outcome = 'd'
    elseif recorded then
      -- 'hash|answer': the hash is hex, so the first '|' ends it.
      local hash = string.match(recorded, '^([^|]*)|')
      if hash == string.match(idemValue, '^([^|]*)|') then
        outcome, answer = 'r', string.sub(recorded, #hash + 2)
      else
        outcome = 'c'
      end
    else
      local online = #st.instances > 0
      local qlen = redis.pcall('LLEN', queue)
      local owe = online and qlen == 0
      local envelopes = owe and every or queued
      -- The rest of the group's reads: the owed list's length (owed), the collapse index's entries (queued with keys), and
      -- the dropped counter when the cap may be passed (replacements only lower the excess): it must take an INCRBY.
      local olen = owe and redis.pcall('LLEN', owed)
      local olds
      if not owe and keys then
        olds = {}
        for i = 1, #keys, 1000 do
          local chunk = redis.pcall('HMGET', index, unpack(keys, i, math.min(i + 999, #keys)))
          if failed(chunk) then olds = chunk break end
          for j = 1, #chunk do olds[#olds + 1] = chunk[j] end
        end
      end
      local excessAtMost = 0
      if cap > 0 and not failed(qlen) and not failed(olen) then excessAtMost = (owe and olen - st.nacked or qlen) + #envelopes - cap end
      local count = excessAtMost > 0 and redis.pcall('GET', counter)
      broken = (failed(qlen) and wrongType(queue, 'list'))
        or (failed(olen) and wrongType(owed, 'list'))
        or (failed(olds) and wrongType(index, 'hash'))
        or (failed(count) and wrongType(counter, 'string'))
        or (count and not string.match(count, '^%-?%d+$') and counter .. ' is not an integer')
      if broken then
        outcome, answer = 'x', broken
      else
        if not owe then replaced = within end
        if epoch > 0 and st.e ~= epoch then redis.call('HSET', state, 'e', epoch) end
        if owe then
          local len = pushChunked(owed, envelopes)
          local excess = cap > 0 and (len - st.nacked - cap) or 0
          if excess > 0 and reject then
            refused = math.min(excess, #envelopes)
            redis.call('RPOP', owed, refused)
          elseif excess > 0 then
            -- Ids acked out of order (or retracted) among the dropped leave 'x'; the rest stay skipped.
            if st.nacked > 0 then
              for _, gone in ipairs(redis.call('LRANGE', owed, 0, excess - 1)) do
                local id = envelopeId(gone)
                if id and st.acked[id] then
                  st.acked[id] = nil
                  st.nacked = st.nacked - 1
                end
              end
              if st.nacked > 0 then redis.call('HSET', state, 'x', joinKeys(st.acked)) else redis.call('HDEL', state, 'x') end
            end
            redis.call('LTRIM', owed, excess, -1)
            redis.call('HINCRBY', state, 'b', excess)
            dropped = excess
          end
          position = st.b + len - #envelopes
          outcome = 'o'
          local lines
          for _, instance in ipairs(st.instances) do
            if instance == caller then
              mine = 1
            else
              if not lines then
                lines = {}
                for i = 1, #envelopes - refused do lines[i] = noticeMessage(user, position + i - 1, envelopes[i]) end
              end
              for i = 1, #lines do noticeTo(notices, instance, lines[i]) end
            end
          end
        else
          -- Collapse: a queued message with the same key that was never sent goes; its successor goes to the tail.
          -- An indexed envelope that was sent since is not in the queue as indexed (sent ones carry "sent"): not found.
          for j = 1, olds and #olds or 0 do
            if olds[j] then replaced = replaced + redis.call('LREM', queue, -1, olds[j]) end
          end
          local len = pushChunked(queue, envelopes)
          -- What the index named before the queue was last empty has left it.
          if len == #envelopes then redis.call('DEL', index) end
          if indexed then
            callChunked('HSET', index, indexed)
            if counterTtl > 0 then redis.call('PEXPIRE', index, counterTtl) end
          end
          local excess = cap > 0 and (len - cap) or 0
          if excess > 0 and reject then
            refused = math.min(excess, #envelopes)
            redis.call('RPOP', queue, refused)
          elseif excess > 0 then
            redis.call('LTRIM', queue, excess, -1)
            dropped = excess
          end
          if earliest and (not st.t or earliest < st.t) then redis.call('HSET', state, 't', earliest) end
          if online then
            outcome = 'w'
            for _, instance in ipairs(st.instances) do
              if instance == caller then mine = 1 else noticeTo(notices, instance, noticeSync(user)) end
            end
          elseif len == #envelopes then
            outcome = 'n'
          end
        end
        countDropped(counter, dropped + refused, counterTtl)
        if entry ~= '' then redis.call('SET', mark, entry, 'PX', 86400000) end
        -- Remembered 24 h, unless nothing was stored (refused past the cap): a retry may store it then.
        if idemKey and refused < n then redis.call('SET', idemKey, idemValue, 'PX', 86400000) end
      end
    end
    outcomes[g] = outcome
    if position ~= 0 or dropped ~= 0 or refused ~= 0 or replaced ~= 0 or mine ~= 0 or answer ~= '' then
      local r = #results
      results[r + 1], results[r + 2], results[r + 3], results[r + 4], results[r + 5], results[r + 6], results[r + 7] = g, position, dropped, refused, replaced, mine, answer
    end
  end
end

-- One notice per instance per call; lines never contain a raw newline (JSON escapes it).
publishNotices(prefix, notices)
results[1] = table.concat(outcomes)
return results
