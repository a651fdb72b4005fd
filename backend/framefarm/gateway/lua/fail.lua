-- Records a failed render. Deterministic failures end the job at once; others
-- retry until the attempts run out, and a worker that keeps failing a job is
-- kept away from it.
-- ARGV: part_id, token, worker_id, message, deterministic ('1'|'0'), max_attempts, block_after
-- Returns {outcome} with outcome 'failed' | 'requeued' | 'ended' | 'stale'
local pid, token, wid, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if not holds_lease(pid, token, wid) then return {'stale'} end
local job_id = job_of(pid)
redis.call('ZREM', K_LEASES, pid)
redis.call('SREM', k_wparts(wid), pid)
if redis.call('EXISTS', k_worker(wid)) == 1 then  -- the admin's worker list (drain.py)
  redis.call('HINCRBY', k_worker(wid), 'parts_failed', 1)
end
redis.call('HINCRBY', K_STATS, 'part_failures', 1)
if ARGV[5] == '1' then
  redis.call('HINCRBY', k_part(pid), 'attempts', 1)
  redis.call('HSET', k_part(pid), 'state', 'failed', 'error', message)
  end_job(job_id, 'failed', message)
  return {'failed'}
end
if redis.call('HINCRBY', k_wfail(job_id), wid, 1) >= tonumber(ARGV[7]) then
  redis.call('SADD', k_block(job_id), wid)
  redis.call('SADD', k_wblock(wid), job_id)
  redis.call('EXPIRE', k_wblock(wid), 604800)  -- a week: outlives the worker's registration
end
return {retry_or_fail(pid, message, tonumber(ARGV[6]), true)}
