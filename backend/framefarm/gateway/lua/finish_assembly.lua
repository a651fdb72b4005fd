-- Marks an assembled job done, only if this gateway still holds the assembly lock.
-- ARGV: job_id, lock_token, archive_key.  Returns 1 on success, 0 if the lock was lost.
local job_id = ARGV[1]
local lock = k_assembly_lock(job_id)
if redis.call('GET', lock) ~= ARGV[2] then return 0 end
local jk = k_job(job_id)
if redis.call('HGET', jk, 'status') ~= 'assembling' then return 0 end
redis.call('HSET', jk, 'status', 'done', 'archive', ARGV[3], 'finished_at', now_ms())
redis.call('ZREM', K_ASSEMBLY, job_id)
redis.call('DEL', lock)
notify_ended(job_id)
touch_job(job_id)
return 1
