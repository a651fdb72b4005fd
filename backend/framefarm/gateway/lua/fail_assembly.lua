-- An assembly that cannot succeed ends the job with the reason.
-- ARGV: job_id, message.  Returns 1 if the job was failed.
local jk = k_job(ARGV[1])
if redis.call('HGET', jk, 'status') ~= 'assembling' then return 0 end
redis.call('HSET', jk, 'status', 'failed', 'error', ARGV[2], 'finished_at', now_ms())
redis.call('ZREM', K_ASSEMBLY, ARGV[1])
redis.call('DEL', k_assembly_lock(ARGV[1]))
notify_ended(ARGV[1])
touch_job(ARGV[1])
return 1
