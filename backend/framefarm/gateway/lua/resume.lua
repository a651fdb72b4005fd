-- Resumes a paused job: back in its Blender version's queue at its own place (its score:
-- priority, then submission order) if it still has queued parts.
-- ARGV: job_id.  Returns {'resumed'} | {'unchanged', status} (not paused) | {'wrong_state', status}
local job_id = ARGV[1]
local jk = k_job(job_id)
local j = redis.call('HMGET', jk, 'status', 'min_version', 'score', 'paused')
if j[1] ~= 'queued' and j[1] ~= 'running' then return {'wrong_state', j[1] or ''} end
if j[4] ~= '1' then return {'unchanged', j[1]} end
redis.call('HDEL', jk, 'paused')
if redis.call('EXISTS', k_job_queue(job_id)) == 1 then
  redis.call('ZADD', k_queue(j[2]), j[3], job_id)
  redis.call('PUBLISH', K_EVENTS, 'work')
end
touch_job(job_id)
return {'resumed'}
