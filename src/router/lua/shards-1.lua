--[[
  The route shards: which instance routes the users of each shard. One hash holds every
  lease and every routing instance's heartbeat, so one call per tick keeps them all and it
  lives in one slot of a Redis Cluster. Each shard belongs to the live instance that ranks
  first for it (rendezvous hashing: shards move only when instances come and go) among those
  not yet holding their share of the shards ranked before (so the split is even). A holder
  renews its leases; a lease that lapsed goes to the shard's first-ranked live instance with
  a new epoch (which the route script checks, so a holder that lost its lease cannot route
  after the next one), or back to its own holder with the same epoch (nobody held it since). A holder that is no longer first hands the shard over without a gap:
  it announces 'h|shard|to|epoch' on the control channel (lines built by includes/control.lua), in order with published messages;
  it routes what it heard before that line, then completes ('t|shard|to|epoch'), and the
  new holder routes what it heard after the line.

  KEYS[1] the shards hash: '<shard>' -> 'holder|epoch|until|to|since', 'i:<instance>' -> heartbeat until,
          't:' -> the targets of the live set they were ranked for ('<count>|<sorted live>' newline, holders)
  ARGV[1] this instance   ARGV[2] lease time (ms)   ARGV[3] number of shards   ARGV[4] control channel
  ARGV[5] 'tick', or 'leave' (shutting down: hand every shard over now)
  ARGV[6..] shards whose hand-over this instance has finished routing up to the announcement

  Returns: {live instances, then per shard this instance holds: shard, epoch, handing over (0/1)}
]]
--- @include "control"

local me, ttl, count, control, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- A hand-over whose announcement was never completed (its line lost on a reconnect) completes by itself.
local HANDOVER_LIMIT = 3 * ttl

local all = redis.call('HGETALL', KEYS[1])
local leases, live = {}, {}
local cachedTargets
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if f == 't:' then
    cachedTargets = v
  elseif string.sub(f, 1, 2) == 'i:' then
    local beat = tonumber(v)
    if beat > now then live[#live + 1] = string.sub(f, 3)
    elseif beat < now - 60000 then redis.call('HDEL', KEYS[1], f) end
  else
    local holder, epoch, expires, to, since = string.match(v, '^([^|]*)|(%d+)|(%d+)|([^|]*)|(%d+)$')
    if holder then leases[tonumber(f)] = { holder = holder, epoch = tonumber(epoch), untl = tonumber(expires), to = to, since = tonumber(since) } end
  end
end

local function without(list, name)
  local out = {}
  for _, x in ipairs(list) do if x ~= name then out[#out + 1] = x end end
  return out
end
live = without(live, me)
if mode ~= 'leave' then
  redis.call('HSET', KEYS[1], 'i:' .. me, now + ttl)
  live[#live + 1] = me
else
  redis.call('HDEL', KEYS[1], 'i:' .. me)
end

-- Each shard's target: its first-ranked live instance (rendezvous hashing) that has fewer than
-- its share, ceil(count / live), of the shards before it. Without the bound, 64 shards split over
-- a few instances by hashing alone are often uneven (a third of them to one, half to another);
-- with it, no instance routes more than its share, and a join or leave still moves few shards.
local targets = {}
-- The ranking costs count x #live sha1 in Lua (about half a millisecond of Redis for three
-- instances): it is made only when the live set changes, and kept under 't:' with that set.
local sorted = {}
for i, inst in ipairs(live) do sorted[i] = inst end
table.sort(sorted)
local signature = count .. '|' .. table.concat(sorted, ',') .. '\n'
if #live > 0 and cachedTargets and string.sub(cachedTargets, 1, #signature) == signature then
  local shard = 0
  for inst in string.gmatch(string.sub(cachedTargets, #signature + 1), '[^,]+') do
    targets[shard] = inst
    shard = shard + 1
  end
elseif #live > 0 then
  local cap, load = math.ceil(count / #live), {}
  for shard = 0, count - 1 do
    local ranked = {}
    for _, inst in ipairs(live) do ranked[#ranked + 1] = { inst = inst, score = redis.sha1hex(shard .. '|' .. inst) } end
    table.sort(ranked, function(x, y) return x.score > y.score end)
    for _, r in ipairs(ranked) do
      if (load[r.inst] or 0) < cap then
        targets[shard] = r.inst
        load[r.inst] = (load[r.inst] or 0) + 1
        break
      end
    end
  end
  local list = {}
  for shard = 0, count - 1 do list[#list + 1] = targets[shard] end
  redis.call('HSET', KEYS[1], 't:', signature .. table.concat(list, ','))
elseif cachedTargets then
  redis.call('HDEL', KEYS[1], 't:') -- nobody left to route: the last instance leaves nothing behind
end
local function first(shard)
  return targets[shard]
end

-- Lease writes go out in one HSET at the end (the last write of a shard wins, as in order).
local writes = {}
local function put(shard, holder, epoch, to, since)
  writes[#writes + 1] = tostring(shard)
  writes[#writes + 1] = holder .. '|' .. epoch .. '|' .. (now + ttl) .. '|' .. to .. '|' .. since
end

local function complete(shard, lease)
  put(shard, lease.to, lease.epoch + 1, '', now)
  redis.call('PUBLISH', control, controlTaken(shard, lease.to, lease.epoch + 1))
  -- The new holder's lease, so the loop below does not take the shard back as if it had none.
  leases[shard] = { holder = lease.to, epoch = lease.epoch + 1, untl = now + ttl, to = '', since = now }
end

for i = 6, #ARGV do
  local shard = tonumber(ARGV[i])
  local lease = leases[shard]
  if lease and lease.holder == me and lease.to ~= '' and lease.untl > now then complete(shard, lease) end
end

local mine = {}
for shard = 0, count - 1 do
  local lease = leases[shard]
  local target = first(shard)
  if lease and lease.holder == me and lease.untl > now then
    if lease.to ~= '' then
      if now - lease.since > HANDOVER_LIMIT then complete(shard, lease) else put(shard, me, lease.epoch, lease.to, lease.since) end
    elseif target and target ~= me then
      put(shard, me, lease.epoch, target, now)
      redis.call('PUBLISH', control, controlHandOver(shard, target, lease.epoch))
      lease.to = target
    elseif mode == 'leave' then
      redis.call('HDEL', KEYS[1], tostring(shard)) -- the last instance leaves: nobody to hand over to
      leases[shard] = nil
    else
      put(shard, me, lease.epoch, '', lease.since)
    end
    if leases[shard] and leases[shard].holder == me then
      mine[#mine + 1] = shard
      mine[#mine + 1] = lease.epoch
      mine[#mine + 1] = lease.to ~= '' and 1 or 0
    end
  elseif (not lease or lease.untl <= now) and target == me then
    -- This instance's own lapsed lease (nobody held the shard since) keeps its epoch: what it
    -- heard meanwhile is still its to route. Taken from another, the epoch goes up.
    local epoch = 1
    if lease then epoch = (lease.holder == me and lease.to == '') and lease.epoch or lease.epoch + 1 end
    put(shard, me, epoch, '', now)
    mine[#mine + 1] = shard
    mine[#mine + 1] = epoch
    mine[#mine + 1] = 0
  end
end
if #writes > 0 then redis.call('HSET', KEYS[1], unpack(writes)) end
table.insert(mine, 1, #live)
return mine
