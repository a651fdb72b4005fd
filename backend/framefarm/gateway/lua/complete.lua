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
if done == tonumber(redis.call('HGET', jk, 'parts_total')) then
  status = frames_complete(job_id)
end
touch_job(job_id)
return {'ok', status}
