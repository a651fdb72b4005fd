-- Counts a part's uploaded result, once, if its lease token still fences it.
-- ARGV: part_id, token, worker_id, result_key, stat_frames, stat_seconds, stat_peak_rss, stat_load_seconds
-- (the result's measurements, framestats.py: summed into the job's record for part sizing)
-- Returns {'ok', job_status} | {'stale'} | {'ended', job_status}
local pid, token, wid = ARGV[1], ARGV[2], ARGV[3]
if not holds_lease(pid, token, wid) then return {'stale'} end
local job_id = job_of(pid)
local jk = k_job(job_id)
local status = redis.call('HGET', jk, 'status')
if status ~= 'running' then return {'ended', status} end
local pk = k_part(pid)
redis.call('ZREM', K_LEASES, pid)
redis.call('SREM', k_wparts(wid), pid)
if redis.call('EXISTS', k_worker(wid)) == 1 then  -- the admin's worker list (drain.py)
  redis.call('HINCRBY', k_worker(wid), 'parts_done', 1)
end
redis.call('HSET', pk, 'state', 'done', 'result', ARGV[4], 'done_at', now_ms())
redis.call('HDEL', pk, 'deadline')
if redis.call('HEXISTS', pk, 'kind') == 1 then  -- the finishing part (finishing.py): the job's last
  status = start_assembly(job_id)
  touch_job(job_id)
  return {'ok', status}
end
redis.call('HINCRBY', jk, 'frames_done', tonumber(redis.call('HGET', pk, 'count')))
local done = redis.call('HINCRBY', jk, 'parts_done', 1)
local leased_at = tonumber(redis.call('HGET', pk, 'leased_at') or '')
if leased_at then  -- the lease's wall time sizes parts where the workers send no stats (claim.lua)
  redis.call('HINCRBY', jk, 'wall_ms', math.max(0, now_ms() - leased_at))
  redis.call('HINCRBY', jk, 'wall_frames', redis.call('HGET', pk, 'count'))
end
if tonumber(ARGV[5] or '0') > 0 then
  redis.call('HINCRBY', jk, 'stat_frames', ARGV[5])
  redis.call('HINCRBYFLOAT', jk, 'stat_seconds', ARGV[6])
  redis.call('HINCRBYFLOAT', jk, 'stat_load_seconds', ARGV[8])
  redis.call('HINCRBY', jk, 'stat_parts', 1)
  if tonumber(ARGV[7]) > tonumber(redis.call('HGET', jk, 'stat_peak_rss') or '0') then
    redis.call('HSET', jk, 'stat_peak_rss', ARGV[7])
  end
end
if redis.call('HGET', jk, 'estimate_pending') == '1' then  -- an estimate's sample (estimates.py)
  if tonumber(ARGV[5] or '0') > 0 then  -- each sample is one frame: its part's time is the frame's
    local s = tonumber(ARGV[6]) / tonumber(ARGV[5])
    local e = redis.call('HMGET', jk, 'est_min', 'est_max')
    if not e[1] or s < tonumber(e[1]) then redis.call('HSET', jk, 'est_min', tostring(s)) end
    if not e[2] or s > tonumber(e[2]) then redis.call('HSET', jk, 'est_max', tostring(s)) end
  end
  if done == tonumber(redis.call('HGET', jk, 'estimate_parts')) then  -- every sample is in: wait
    local now = now_ms()
    redis.call('HSET', jk, 'status', 'estimated', 'estimated_at', now)
    -- The samples' measurements, kept as they are now: the job's own sums grow once it goes on.
    local m = redis.call('HMGET', jk, 'stat_frames', 'stat_seconds', 'stat_peak_rss', 'stat_load_seconds',
      'stat_parts', 'wall_frames', 'wall_ms')
    redis.call('HSET', jk, 'est_frames', m[1] or 0, 'est_seconds', m[2] or 0, 'est_peak_rss', m[3] or 0,
      'est_load_seconds', m[4] or 0, 'est_parts', m[5] or 0, 'est_wall_frames', m[6] or 0, 'est_wall_ms', m[7] or 0)
    redis.call('ZADD', K_ESTIMATED, now, job_id)
    touch_job(job_id)
    return {'ok', 'estimated'}
  end
elseif done == tonumber(redis.call('HGET', jk, 'parts_total')) then
  status = frames_complete(job_id)
end
touch_job(job_id)
return {'ok', status}
