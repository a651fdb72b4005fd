-- An estimated job nobody resumed within the farm's retention (estimates.py) expires: it
-- ends, so clean-up lets go of its scene files and its samples' results as for any ended job,
-- and its records go after their own retention.
-- ARGV: job_id, error.  Returns 1 when the job expired now, 0 when it is not estimated (resumed
-- or cancelled since): either way it leaves the index of estimated jobs.
local job_id = ARGV[1]
local jk = k_job(job_id)
redis.call('ZREM', K_ESTIMATED, job_id)
if redis.call('HGET', jk, 'status') ~= 'estimated' then return 0 end
local now = now_ms()
redis.call('HSET', jk, 'status', 'expired', 'finished_at', now, 'expired_at', now, 'error', ARGV[2])
redis.call('UNLINK', k_job_held(job_id))
touch_job(job_id)
return 1
