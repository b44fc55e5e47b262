--[[
  One more page of the ttl sweep an identify began (attach-5.lua): removes the queued entries
  past their own ttl (or the queue's time to live) from ARGV[1] on, keeping the rest in order.
  The state's 't' stays due until the last page sets it to the earliest expiry kept; a sweep
  that finds 't' no longer due (another identify's sweep ended) stops. Entries taken from the
  head between two pages (another socket reading) shift the rest towards it: the sweep may
  then miss an expired entry, never remove a live one; a socket taking it drops it anyway.

  Worst case: one page (ARGV[2] entries read, an LSET per expired one, one LREM; see
  includes/sweep.lua).

  KEYS[1] queue   KEYS[2] owed (unused)   KEYS[3] state   KEYS[4] dropped counter (unused)   KEYS[5] inbox mark (unused)
  ARGV[1] position the page starts at   ARGV[2] entries per page   ARGV[3] queue expiry cutoff (ms; 0 for none)
  ARGV[4] now (ms)   ARGV[5] earliest ttl expiry kept by the pages before (0: none)

  Returns: {entries expired, where the next page starts (-1: done), earliest ttl expiry kept so far (0: none)}
]]
--- @include "args"
--- @include "envelope"
--- @include "sweep"

local queue, state = KEYS[1], KEYS[3]
local from, page, cutoff, now, before = argNumber(1), argNumber(2), argNumber(3), argNumber(4), argNumber(5)
if page < 1 then argError(2, 'a positive number') end
local t = tonumber(redis.call('HGET', state, 't'))
if not t or t > now then return {0, -1, 0} end

local expired, next, earliest, done = sweepPage(queue, from, page, cutoff, now)
if before > 0 and (not earliest or before < earliest) then earliest = before end
if not done then return {expired, next, earliest or 0} end
sweepDone(state, earliest)
return {expired, -1, earliest or 0}
