-- Reads made under redis.pcall before a group's first write (route.lua, acks.lua): a key of another
-- type answers an error table (WRONGTYPE) instead of failing the script after earlier groups wrote.
local function failed(reply) return type(reply) == 'table' and reply.err ~= nil end

-- Why the group cannot use key: asked only once a read failed, for the answer.
local function wrongType(key, wanted) return key .. ' is a ' .. redis.call('TYPE', key).ok .. ', not a ' .. wanted end
