-- Retries a failed job: its failed parts (and those dropped with its queue when it failed)
-- go back to its queue with their attempts reset, the workers kept away from it are let
-- back, and the job runs again. Parts still leased are left to their lease: a result that
-- lands now counts, an expired one requeues.
-- If clean-up already let go of the job (its part results deleted, its scene files
-- released), every part renders again, and the scene files are held anew unless one is
-- being deleted: then nothing changes ({'files_gone'}; the caller also checks that every
-- file is still stored before calling).
-- ARGV: job_id, then the job's scene file hashes.
-- Returns {'ok', status} | {'wrong_state', status} | {'files_gone'}
local job_id = ARGV[1]
local jk = k_job(job_id)
local j = redis.call('HMGET', jk, 'status', 'parts_total', 'started_at')
if j[1] ~= 'failed' then return {'wrong_state', j[1] or ''} end
local released = not redis.call('ZSCORE', K_FILE_HOLDERS, job_id)
if released then
  for i = 2, #ARGV do
    if redis.call('EXISTS', k_deleting(ARGV[i])) == 1 then return {'files_gone'} end
  end
  local held = k_held(job_id)
  for i = 2, #ARGV do
    if redis.call('SADD', held, ARGV[i]) == 1 then redis.call('HINCRBY', K_FILE_REFS, ARGV[i], 1) end
  end
  redis.call('ZADD', K_FILE_HOLDERS, now_ms(), job_id)
  redis.call('ZREM', K_RECORDS_DUE, job_id)
  redis.call('HSET', jk, 'frames_done', 0, 'parts_done', 0)
end
local status = j[3] and 'running' or 'queued'
redis.call('HSET', jk, 'status', status)
redis.call('HDEL', jk, 'error', 'finished_at')
redis.call('DEL', k_wfail(job_id), k_block(job_id))
-- An estimate that failed in its samples keeps the rest of its frames held (estimates.py).
local held_q = k_job_held(job_id)
for i = 0, tonumber(j[2]) - 1 do
  local pid = job_id .. ':' .. i
  local state = redis.call('HGET', k_part(pid), 'state')
  if state ~= 'leased' and (released or state ~= 'done') and not redis.call('ZSCORE', held_q, i) then
    redis.call('HSET', k_part(pid), 'attempts', 0)
    redis.call('HDEL', k_part(pid), 'error', 'result', 'done_at')
    enqueue(pid, job_id)
  end
end
-- A job that failed in its finishing task (every frame in, the task out of attempts) runs the
-- task again; one whose frames render again gets it anew once they are in (frames_complete).
local fin = job_id .. ':' .. j[2]
if redis.call('HEXISTS', jk, 'finishing') == 1 then
  if released then
    redis.call('HDEL', jk, 'finishing')
    redis.call('DEL', k_part(fin))
  elseif redis.call('HGET', k_part(fin), 'state') ~= 'leased' then
    redis.call('HSET', k_part(fin), 'attempts', 0)
    redis.call('HDEL', k_part(fin), 'error', 'result', 'done_at')
    enqueue(fin, job_id)
  end
end
touch_job(job_id)
redis.call('PUBLISH', K_EVENTS, 'work')
return {'ok', status}
