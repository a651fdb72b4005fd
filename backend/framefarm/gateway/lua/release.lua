-- A worker that stops gracefully hands its part back at once, without counting
-- an attempt, instead of letting the lease run out.
-- ARGV: part_id, token.  Returns {'requeued'|'ended'|'stale'}
local pid, token = ARGV[1], ARGV[2]
local wid = leased_part(pid, token)
if not wid then return {'stale'} end
redis.call('ZREM', K_LEASES, pid)
redis.call('SREM', k_wparts(wid), pid)
return {retry_or_fail(pid, 'released by worker ' .. wid, 1000000, false)}
