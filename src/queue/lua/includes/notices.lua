-- Notices published on an instance's channel about a user whose sockets it holds
-- (src/protocol/notices.ts owns the format and reads them): one line each, '<kind>|<user>|...';
-- several lines in one PUBLISH are joined by '\n' (no field holds a raw newline).

-- 'm|user|position|envelope': a message newly owed at that position.
local function noticeMessage(user, position, envelope)
  return 'm|' .. user .. '|' .. position .. '|' .. envelope
end

-- 'a|user|id,id,...': acks taken here; the other instances' sockets forget them.
local function noticeAcked(user, ids)
  return 'a|' .. user .. '|' .. table.concat(ids, ',')
end

-- 's|user': messages wait in the user's queue; the sockets read again.
local function noticeSync(user)
  return 's|' .. user
end

-- 'k|user|conn': a connection replaced past the per-user limit (already unregistered).
local function noticeReplaced(user, conn)
  return 'k|' .. user .. '|' .. conn
end

-- 'r|user|id': a message retracted, told to the sockets that were sent it;
-- 'r|user|id|*' (every true): to every socket, as it was sent to one before them.
local function noticeRetracted(user, id, every)
  return 'r|' .. user .. '|' .. id .. (every and '|*' or '')
end

-- One PUBLISH carrying several notices.
local function noticeBatch(lines)
  return table.concat(lines, '\n')
end

-- Notices gathered per instance over a call (outbox[instance] = lines), then one PUBLISH each.
local function noticeTo(outbox, instance, line)
  local lines = outbox[instance]
  if not lines then
    lines = {}
    outbox[instance] = lines
  end
  lines[#lines + 1] = line
end

local function publishNotices(prefix, outbox)
  for instance, lines in pairs(outbox) do
    redis.call('PUBLISH', prefix .. instance, noticeBatch(lines))
  end
end
