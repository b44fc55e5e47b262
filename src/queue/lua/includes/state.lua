-- A user's state hash: 'c:<conn>' -> instance for each connection, 'b' the absolute
-- position of the head of owed, 'e' the route epoch, 'x' ids acked out of order
-- (comma-separated, not yet trimmed from owed; retracted owed ids too), 't' the earliest
-- expiry of a queued message with a ttl, 'r' ids retracted after they were sent while the user
-- had no connection (comma-separated, at most RETRACTS_KEPT): the next socket is told, after `ready`.
local function readState(key)
  local all = redis.call('HGETALL', key)
  local st = { conns = {}, instances = {}, nconns = 0, b = 0, acked = {}, nacked = 0 }
  local seen = {}
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if string.sub(f, 1, 2) == 'c:' then
      st.conns[string.sub(f, 3)] = v
      st.nconns = st.nconns + 1
      if not seen[v] then
        seen[v] = true
        st.instances[#st.instances + 1] = v
      end
    elseif f == 'b' then st.b = tonumber(v)
    elseif f == 'e' then st.e = tonumber(v)
    elseif f == 't' then st.t = tonumber(v)
    elseif f == 'r' then st.r = v
    elseif f == 'x' then
      for id in string.gmatch(v, '[^,]+') do
        st.acked[id] = true
        st.nacked = st.nacked + 1
      end
    end
  end
  return st
end

local function joinKeys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  return table.concat(list, ',')
end
