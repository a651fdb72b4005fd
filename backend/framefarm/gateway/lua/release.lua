-- A worker that stops gracefully hands its part back at once, without counting
-- an attempt, instead of letting the lease run out.
-- ARGV: part_id, token, worker_id.  Returns {'requeued'|'ended'|'stale'}
local pid, token, wid = ARGV[1], ARGV[2], ARGV[3]
if not holds_lease(pid, token, wid) then return {'stale'} end
redis.call('ZREM', K_LEASES, pid)
redis.call('SREM', k_wparts(wid), pid)
return {retry_or_fail(pid, 'released by worker ' .. wid, 1000000, false)}
