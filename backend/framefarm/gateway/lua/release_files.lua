-- Lets go of the scene files a job (or a refused submission) held.
-- ARGV: job_id, mode: 'abort' (the submission was refused: leave no trace) or 'ended'
-- (the job finished: note when each file fell idle, and index a done job's archive
-- for retention).  Returns 1 if this call released the hold, 0 if none was held.
local job_id, mode = ARGV[1], ARGV[2]
-- A failed job retried (retry.lua) between clean-up reading its status and this call runs
-- again: it keeps its files and its parts' results.
if mode == 'ended' then
  local status = redis.call('HGET', k_job(job_id), 'status')
  if status == 'queued' or status == 'running' then return 0 end
end
if redis.call('ZREM', K_FILE_HOLDERS, job_id) == 0 then return 0 end
local held = k_held(job_id)
local now = now_ms()
for _, sha in ipairs(redis.call('SMEMBERS', held)) do
  if redis.call('HINCRBY', K_FILE_REFS, sha, -1) <= 0 then
    redis.call('HDEL', K_FILE_REFS, sha)
    if mode == 'ended' then redis.call('HSET', K_FILE_RELEASED, sha, now) end
  end
end
redis.call('DEL', held)
if mode == 'ended' then
  local job = redis.call('HMGET', k_job(job_id), 'status', 'finished_at')
  if job[1] == 'done' then redis.call('ZADD', K_ARCHIVES, job[2] or now, job_id) end
end
return 1
