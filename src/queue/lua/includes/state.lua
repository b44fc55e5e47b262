-- A user's state hash: 'c:<conn>' -> instance for each connection, 'b' the absolute
-- position of the head of owed, 'e' the route epoch, 'x' ids acked out of order
-- (comma-separated, not yet trimmed from owed; retracted owed ids too), 't' the earliest
-- expiry of a queued message with a ttl, 'r' ids retracted after they were sent while the user
-- had no connection (comma-separated, at most RETRACTS_KEPT): the next socket is told, after `ready`.
-- For the absences (notify): 'h:<conn>' for each connection that said it is not visible, 'L'
-- whether the user is looking and since when ('1|ms' or '0|ms'; absent: not looking, ever),
-- 'N' the absence's last notify ('ms|count'; absent: none written in this absence).
local function parseState(all)
  local st = { conns = {}, instances = {}, nconns = 0, b = 0, acked = {}, nacked = 0, hidden = {}, looking = false, since = 0 }
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
    elseif string.sub(f, 1, 2) == 'h:' then st.hidden[string.sub(f, 3)] = true
    elseif f == 'L' then
      st.looking = string.sub(v, 1, 1) == '1'
      st.since = tonumber(string.sub(v, 3)) or 0
    elseif f == 'N' then
      local at, count = string.match(v, '^(%d+)|(%d+)$')
      if at then st.notified = { at = tonumber(at), count = tonumber(count) } end
    elseif f == 'x' then
      for id in string.gmatch(v, '[^,]+') do
        st.acked[id] = true
        st.nacked = st.nacked + 1
      end
    end
  end
  return st
end

local function readState(key) return parseState(redis.call('HGETALL', key)) end

local function joinKeys(set)
  local list = {}
  for k in pairs(set) do list[#list + 1] = k end
  return table.concat(list, ',')
end

-- Redis's clock (ms): the scripts that note when the user looked, and the absence check, agree on it.
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- After a script changed the connections (st.conns, st.hidden as they are now): notes in 'L'
-- when the user starts or stops looking (a connection that has not said it is hidden).
-- True when that changed: the caller schedules an absence check.
local function noteLooking(state, st)
  local looking = false
  for c in pairs(st.conns) do
    if not st.hidden[c] then looking = true break end
  end
  if looking == st.looking then return false end
  st.looking, st.since = looking, nowMs()
  redis.call('HSET', state, 'L', (looking and '1|' or '0|') .. st.since)
  return true
end
