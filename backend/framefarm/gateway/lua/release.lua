-- A worker that stops gracefully, or cannot take the part just now (its disk is full),
-- hands its part back at once, without counting an attempt, instead of letting the lease
-- run out. The worker's reason, if it gave one, becomes the part's last error, where the
-- job's parts show it.
-- ARGV: part_id, token, worker_id[, reason].  Returns {'requeued'|'ended'|'stale'}
local pid, token, wid, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not holds_lease(pid, token, wid) then return {'stale'} end
redis.call('ZREM', K_LEASES, pid)
redis.call('SREM', k_wparts(wid), pid)
local err = 'released by worker ' .. wid
if reason and reason ~= '' then err = err .. ': ' .. reason end
return {retry_or_fail(pid, err, 1000000, false)}
