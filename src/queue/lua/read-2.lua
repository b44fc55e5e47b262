--[[
  Reads owed messages in order, after a position, for a socket that has room.

  KEYS[1] owed   KEYS[2] owed data
  ARGV[1] position (exclusive)   ARGV[2] how many at most

  Returns: {position1, id1, envelope1, position2, id2, envelope2, ...}
]]
local ranked = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])
if #ranked == 0 then return {} end
local ids = {}
for i = 1, #ranked, 2 do ids[#ids + 1] = ranked[i] end
local envelopes = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i, envelope in ipairs(envelopes) do
  if envelope then
    out[#out + 1] = ranked[i * 2]
    out[#out + 1] = ids[i]
    out[#out + 1] = envelope
  end
end
return out
