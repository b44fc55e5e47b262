--[[
  Takes or extends the router lease: exactly one instance routes PUBLISHes.

  KEYS[1] lease key
  ARGV[1] instance id   ARGV[2] lease time (ms)

  Returns: 1 if this instance holds the lease, 0 otherwise
]]
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
