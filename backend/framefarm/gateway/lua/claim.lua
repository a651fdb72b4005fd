-- Hands the worker the best part it may render, under a fresh lease.
-- ARGV: worker_id, blender_version, lease_ms, max_attempts, scan_limit, worker_ttl_s
-- Returns {'ok', pid, token, deadline, start, count, step, attempts} | {'empty'} | {'unknown_worker'}
local wid, version = ARGV[1], tonumber(ARGV[2])
local lease_ms, max_attempts, scan = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
reap_expired(now, max_attempts, 100)
if redis.call('EXISTS', k_worker(wid)) == 0 then return {'unknown_worker'} end
redis.call('ZADD', P .. 'workers', now, wid)
redis.call('EXPIRE', k_worker(wid), tonumber(ARGV[6]))
-- One queue per minimum Blender version; a worker only looks at queues its
-- Blender can open, so a 3.4 worker never gets a 4.5 scene.
local best_pid, best_score, best_q
for _, v in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  if tonumber(v) <= version then
    local q = k_queue(v)
    local items = redis.call('ZRANGE', q, 0, scan - 1, 'WITHSCORES')
    for j = 1, #items, 2 do
      local pid, sc = items[j], tonumber(items[j + 1])
      if best_score and sc >= best_score then break end
      if redis.call('SISMEMBER', k_block(job_of(pid)), wid) == 0 then
        best_pid, best_score, best_q = pid, sc, q
        break
      end
    end
  end
end
if not best_pid then return {'empty'} end
redis.call('ZREM', best_q, best_pid)
local token = tostring(redis.call('INCR', P .. 'fence'))
local deadline = now + lease_ms
local pk = k_part(best_pid)
redis.call('HSET', pk, 'state', 'leased', 'worker', wid, 'token', token, 'deadline', deadline)
redis.call('ZADD', K_LEASES, deadline, best_pid)
redis.call('SADD', k_wparts(wid), best_pid)
local job_id = job_of(best_pid)
if redis.call('HGET', k_job(job_id), 'status') == 'queued' then
  redis.call('HSET', k_job(job_id), 'status', 'running', 'started_at', now)
end
touch_job(job_id)
local p = redis.call('HMGET', pk, 'start', 'count', 'step', 'attempts')
return {'ok', best_pid, token, tostring(deadline), p[1], p[2], p[3], p[4]}
