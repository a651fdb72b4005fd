-- Changes a queued or running job's priority: its score (commit_job.lua: priority first,
-- then submission order, which the old score keeps) is rewritten, and the job moves within
-- its version's queue if it is in line there (a paused job takes the score with it).
-- ARGV: job_id, priority.  Returns {'ok'} | {'wrong_state', status}
local job_id, priority = ARGV[1], tonumber(ARGV[2])
local jk = k_job(job_id)
local j = redis.call('HMGET', jk, 'status', 'min_version', 'score', 'priority')
if j[1] ~= 'queued' and j[1] ~= 'running' then return {'wrong_state', j[1] or ''} end
local span = 2199023255552  -- 2^41 submissions per priority step (as commit_job.lua)
local seq = tonumber(j[3]) - (1000 - tonumber(j[4] or '0')) * span
local score = string.format('%.0f', (1000 - priority) * span + seq)
redis.call('HSET', jk, 'priority', priority, 'score', score)
if redis.call('ZSCORE', k_queue(j[2]), job_id) then
  redis.call('ZADD', k_queue(j[2]), score, job_id)
  redis.call('PUBLISH', K_EVENTS, 'work')
end
touch_job(job_id)
return {'ok'}
