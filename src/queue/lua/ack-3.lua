--[[
  Acknowledges messages: removes the named ids from what the user is owed, and
  tells the other instances holding sockets of the user, so they free room.
  Ids that are not owed are ignored.

  KEYS[1] owed   KEYS[2] owed data   KEYS[3] conns
  ARGV[1] instance channel prefix    ARGV[2] this instance id    ARGV[3] user id
  ARGV[4..] message ids

  Returns: the number of ids removed
]]
local removed = {}
for i = 4, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    removed[#removed + 1] = ARGV[i]
  end
end
if #removed == 0 then return 0 end
-- unpack() has a stack limit of a few thousand values: delete in chunks.
for i = 1, #removed, 1000 do
  redis.call('HDEL', KEYS[2], unpack(removed, i, math.min(i + 999, #removed)))
end

local seen = { [ARGV[2]] = true }
local line
for _, instance in ipairs(redis.call('HVALS', KEYS[3])) do
  if not seen[instance] then
    seen[instance] = true
    line = line or ('a|' .. ARGV[3] .. '|' .. table.concat(removed, ','))
    redis.call('PUBLISH', ARGV[1] .. instance, line)
  end
end
return #removed
