--[[
  Routes a batch of published messages, each to one user: appended to the user's
  owed set (and announced to every instance holding a socket of the user) when
  the user has a connection, appended to the user's queue otherwise. One script
  per batch, so "deliver or queue" is decided atomically against presence.

  KEYS[1]            message id counter
  KEYS[2 + 4(i-1)..] per message i: queue, owed, owed data, conns
  ARGV[1]            instance channel prefix
  ARGV[2]            receive time (ms since the epoch)
  ARGV[3 + 3(i-1)..] per message i: user id, channel (JSON string), payload (JSON string)

  Returns: {delivered, queued, one character per message: '1' delivered, '0' queued}
]]
local prefix, ts = ARGV[1], ARGV[2]
local count = (#KEYS - 1) / 4
local first = redis.call('INCRBY', KEYS[1], count) - count
local notices = {}
local delivered, queued = 0, 0
local flags = {}

for i = 1, count do
  local k, a = 2 + (i - 1) * 4, 3 + (i - 1) * 3
  local id = tostring(first + i)
  local user = ARGV[a]
  local envelope = '{"rm":{"id":"' .. id .. '","channel":' .. ARGV[a + 1] ..
    ',"payload":' .. ARGV[a + 2] .. ',"ts":' .. ts .. '}}'
  local instances = redis.call('HVALS', KEYS[k + 3])
  if #instances == 0 then
    redis.call('RPUSH', KEYS[k], envelope)
    queued = queued + 1
    flags[i] = '0'
  else
    redis.call('ZADD', KEYS[k + 1], first + i, id)
    redis.call('HSET', KEYS[k + 2], id, envelope)
    local line = 'm|' .. user .. '|' .. id .. '|' .. envelope
    local seen = {}
    for _, instance in ipairs(instances) do
      if not seen[instance] then
        seen[instance] = true
        local list = notices[instance]
        if not list then list = {}; notices[instance] = list end
        list[#list + 1] = line
      end
    end
    delivered = delivered + 1
    flags[i] = '1'
  end
end

-- One notice per instance per batch; lines never contain a raw newline (JSON escapes it).
for instance, lines in pairs(notices) do
  redis.call('PUBLISH', prefix .. instance, table.concat(lines, '\n'))
end
return {delivered, queued, table.concat(flags)}
