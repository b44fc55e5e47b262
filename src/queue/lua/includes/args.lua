-- Arguments are checked before a script's first write: Redis keeps whatever a script wrote
-- before it failed, so a bad argument met half way would leave half a change behind.
local function argError(i, what)
  error(redis.error_reply('ERR bad argument ' .. i .. ': ' .. what .. ' expected, got ' .. tostring(ARGV[i])))
end

local function argNumber(i)
  local v = tonumber(ARGV[i])
  if not v or v ~= v or v == math.huge or v == -math.huge then argError(i, 'a number') end
  return v
end

local function argString(i)
  if ARGV[i] == nil then argError(i, 'a string') end
  return ARGV[i]
end
