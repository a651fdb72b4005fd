-- Hands the worker the best part it may render, under a fresh lease.
-- ARGV: worker_id, blender_version, lease_ms, max_attempts, scan_limit, worker_ttl_s, secret
-- (`secret`: 128 random bits from the caller; Redis's math.random is no secure source)
-- Returns {'ok', pid, token, deadline, index, start, count, step, attempts} | {'empty'} | {'unknown_worker'}
local wid, version = ARGV[1], tonumber(ARGV[2])
local lease_ms, max_attempts, scan = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
reap_expired(now, max_attempts, 100)
if redis.call('EXISTS', k_worker(wid)) == 0 then return {'unknown_worker'} end
redis.call('ZADD', K_WORKERS, now, wid)
redis.call('EXPIRE', k_worker(wid), tonumber(ARGV[6]))
-- A drained worker (drain.py) stays known, and is handed nothing.
if redis.call('HEXISTS', k_worker(wid), 'drained') == 1 then return {'empty'} end
-- A job whose finishing part is queued (complete.lua) goes only to a worker advertising its kind.
local caps = ',' .. (redis.call('HGET', k_worker(wid), 'capabilities') or '') .. ','
local function can_take(jid)
  local kind = redis.call('HGET', k_job(jid), 'finishing')
  return not kind or string.find(caps, ',' .. kind .. ',', 1, true) ~= nil
end
-- One queue of jobs per minimum Blender version; a worker only looks at queues its
-- Blender can open, so a 3.4 worker never gets a 4.5 scene. The head job it is not
-- kept away from wins (at most `scan` jobs looked at per queue).
local best_job, best_score, best_q
for _, v in ipairs(redis.call('SMEMBERS', K_QUEUES)) do
  if tonumber(v) <= version then
    local q = k_queue(v)
    local items = redis.call('ZRANGE', q, 0, scan - 1, 'WITHSCORES')
    for j = 1, #items, 2 do
      local jid, sc = items[j], tonumber(items[j + 1])
      if best_score and sc >= best_score then break end
      if redis.call('SISMEMBER', k_block(jid), wid) == 0 and can_take(jid) then
        best_job, best_score, best_q = jid, sc, q
        break
      end
    end
  end
end
if not best_job then return {'empty'} end
-- The job's lowest queued part; the job leaves the line with its last one.
local popped = redis.call('ZPOPMIN', k_job_queue(best_job))
if redis.call('EXISTS', k_job_queue(best_job)) == 0 then redis.call('ZREM', best_q, best_job) end
if #popped == 0 then return {'empty'} end  -- not reached: a job is in line only with queued parts
local pid = best_job .. ':' .. popped[1]
-- The token leads with the fence number, which only grows, so a token still tells which
-- lease came later; the secret after it is what makes the token unguessable.
local fence = redis.call('INCR', K_FENCE)
local token = fence .. '-' .. ARGV[7]
local deadline = now + lease_ms
local pk = k_part(pid)
redis.call('HSET', pk, 'state', 'leased', 'worker', wid, 'token', token, 'deadline', deadline)
redis.call('ZADD', K_LEASES, deadline, pid)
redis.call('SADD', k_wparts(wid), pid)
if redis.call('HGET', k_job(best_job), 'status') == 'queued' then
  redis.call('HSET', k_job(best_job), 'status', 'running', 'started_at', now)
end
touch_job(best_job)
local p = redis.call('HMGET', pk, 'index', 'start', 'count', 'step', 'attempts')
return {'ok', pid, token, tostring(deadline), p[1], p[2], p[3], p[4], p[5]}
