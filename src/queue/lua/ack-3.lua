--[[
  Acknowledges messages: removes the named ids from what the user is owed, and
  tells the other instances holding sockets of the user, so they free room.
  Ids that are not owed are ignored.

  KEYS[1] owed   KEYS[2] owed data   KEYS[3] conns
  ARGV[1] instance channel prefix    ARGV[2] this instance id    ARGV[3] user id
  ARGV[4..] message ids

  Returns: the number of ids removed
]]
-- A few commands per ack frame, not one per id: which ids are owed (ZMSCORE), then remove
-- those. unpack() has a stack limit of a few thousand values: work in chunks.
local removed, seen = {}, {}
for i = 4, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(ARGV, i, last))
  for j = 1, #scores do
    local id = ARGV[i + j - 1]
    if scores[j] and not seen[id] then
      seen[id] = true
      removed[#removed + 1] = id
    end
  end
end
if #removed == 0 then return 0 end
for i = 1, #removed, 1000 do
  local last = math.min(i + 999, #removed)
  redis.call('ZREM', KEYS[1], unpack(removed, i, last))
  redis.call('HDEL', KEYS[2], unpack(removed, i, last))
end

local notified = { [ARGV[2]] = true }
local line
for _, instance in ipairs(redis.call('HVALS', KEYS[3])) do
  if not notified[instance] then
    notified[instance] = true
    line = line or ('a|' .. ARGV[3] .. '|' .. table.concat(removed, ','))
    redis.call('PUBLISH', ARGV[1] .. instance, line)
  end
end
return #removed
