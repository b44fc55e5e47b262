--[[
  Unregisters connections of a user: one connection, or every connection of one
  instance (ARGV[1] = '*', used when an instance is found dead). When no
  connection is left, every owed message goes back to the head of the queue in
  its original order, ahead of anything queued since.

  KEYS[1] conns   KEYS[2] owed   KEYS[3] owed data   KEYS[4] queue
  KEYS[5] the instance's set of users   KEYS[6] index of non-empty queues
  ARGV[1] connection id, or '*'   ARGV[2] instance id   ARGV[3] user id   ARGV[4] now

  Returns: {requeued count, connections left}
]]
local conn, instance, user = ARGV[1], ARGV[2], ARGV[3]
local all = redis.call('HGETALL', KEYS[1])
local left, instanceLeft = 0, false
for i = 1, #all, 2 do
  local c, inst = all[i], all[i + 1]
  if c == conn or (conn == '*' and inst == instance) then
    redis.call('HDEL', KEYS[1], c)
  else
    left = left + 1
    if inst == instance then instanceLeft = true end
  end
end
if not instanceLeft then redis.call('SREM', KEYS[5], user) end
if left > 0 then return {0, left} end

local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local n = #ids
-- LPUSH puts its last argument first: push chunks from the newest back to the oldest.
local chunk = 1000
local stop = n
while stop >= 1 do
  local start = math.max(1, stop - chunk + 1)
  local slice = {}
  for i = start, stop do slice[#slice + 1] = ids[i] end
  local envelopes = redis.call('HMGET', KEYS[3], unpack(slice))
  local args = {}
  for i = #envelopes, 1, -1 do
    if envelopes[i] then args[#args + 1] = envelopes[i] end
  end
  if #args > 0 then redis.call('LPUSH', KEYS[4], unpack(args)) end
  stop = start - 1
end
redis.call('DEL', KEYS[2], KEYS[3])
local head = redis.call('LINDEX', KEYS[4], 0)
if head then
  redis.call('ZADD', KEYS[6], tonumber(string.match(head, '^{"rm":{"id":"[^"]+".*"ts":(%d+)}}$')) or ARGV[4], user)
end
return {n, 0}
