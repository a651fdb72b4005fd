-- Resumes a paused job: back in its Blender version's queue at its own place (its score:
-- priority, then submission order) if it still has queued parts. An estimated job (its
-- samples in, estimates.py) goes on with the rest of its frames: its held parts become its
-- queue in one O(1) step (every sample is done, so the queue is empty), or, with nothing
-- left to render, it goes on to its finishing task or assembly.
-- ARGV: job_id.  Returns {'resumed'} | {'unchanged', status} (not paused) | {'wrong_state', status}
local job_id = ARGV[1]
local jk = k_job(job_id)
local j = redis.call('HMGET', jk, 'status', 'min_version', 'score', 'paused')
if j[1] == 'estimated' then
  redis.call('HDEL', jk, 'estimate_pending', 'paused')
  redis.call('HSET', jk, 'status', 'running')
  redis.call('ZREM', K_ESTIMATED, job_id)
  if redis.call('EXISTS', k_job_held(job_id)) == 1 then
    redis.call('RENAME', k_job_held(job_id), k_job_queue(job_id))
    redis.call('ZADD', k_queue(j[2]), j[3], job_id)
    redis.call('PUBLISH', K_EVENTS, 'work')
  else
    frames_complete(job_id)
  end
  touch_job(job_id)
  return {'resumed'}
end
if j[1] ~= 'queued' and j[1] ~= 'running' then return {'wrong_state', j[1] or ''} end
if j[4] ~= '1' then return {'unchanged', j[1]} end
redis.call('HDEL', jk, 'paused')
if redis.call('EXISTS', k_job_queue(job_id)) == 1 then
  redis.call('ZADD', k_queue(j[2]), j[3], job_id)
  redis.call('PUBLISH', K_EVENTS, 'work')
end
touch_job(job_id)
return {'resumed'}
