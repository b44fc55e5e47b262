--[[
  A lease: one instance at a time does a job (reads rm:inbox, so entries for one user are
  stored in stream order; reaps a dead instance). Takes the lease when it is free, renews it
  when the caller holds it, or gives it up ('release'). O(1).

  KEYS[1] the lease   ARGV[1] the caller's token   ARGV[2] lease time (ms)   ARGV[3] 'release' or ''

  Returns: 1 while the caller holds the lease, 0 otherwise.
]]
local holder = redis.call('GET', KEYS[1])
if ARGV[3] == 'release' then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
