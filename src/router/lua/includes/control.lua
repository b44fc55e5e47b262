-- Lines of the control channel, heard in order with the published messages
-- (src/protocol/control-lines.ts owns the format and reads them).

-- 'h|shard|to|epoch': the holder of the shard's lease with this epoch hands it over to `to`;
-- it routes what it heard before this line, the new holder what it heard after.
local function controlHandOver(shard, to, epoch)
  return 'h|' .. shard .. '|' .. to .. '|' .. epoch
end

-- 't|shard|to|epoch': the hand-over is complete; `to` holds the shard with this (new) epoch.
local function controlTaken(shard, to, epoch)
  return 't|' .. shard .. '|' .. to .. '|' .. epoch
end
