--[[
  A socket says whether the app is in front of the user (the `visibility` frame): its
  connection gets or loses 'h:<conn>' in the state, and 'L' notes when the user started or
  stopped looking (includes/state.lua). A connection no longer registered changes nothing.

  Worst case: HGETALL of the state (the user's connections), two HSET/HDEL.

  KEYS[1] queue (unused)   KEYS[2] owed (unused)   KEYS[3] state   KEYS[4] dropped counter (unused)   KEYS[5] inbox mark (unused)
  ARGV[1] connection id   ARGV[2] '1' visible, '0' not

  Returns: {1 if the connection is registered else 0, 1 if the user started or stopped looking else 0}
]]
--- @include "args"
--- @include "state"

local state = KEYS[3]
local conn, visible = argString(1), argString(2)
if visible ~= '0' and visible ~= '1' then argError(2, "'0' or '1'") end
local st = readState(state)
if not st.conns[conn] then return {0, 0} end
if visible == '1' then
  if st.hidden[conn] then redis.call('HDEL', state, 'h:' .. conn) end
  st.hidden[conn] = nil
else
  if not st.hidden[conn] then redis.call('HSET', state, 'h:' .. conn, '1') end
  st.hidden[conn] = true
end
return {1, noteLooking(state, st) and 1 or 0}
