-- A done job whose archive is past retention becomes 'expired' (downloads answer 410).
-- ARGV: job_id.  Returns 1 when the caller should delete the archive object (also when
-- an earlier sweep marked the job but died before deleting it), 0 otherwise.
local jk = k_job(ARGV[1])
local status = redis.call('HGET', jk, 'status')
if status == 'done' then
  redis.call('HSET', jk, 'status', 'expired', 'expired_at', now_ms())
  touch_job(ARGV[1])
  return 1
end
if status == 'expired' then return 1 end
return 0
