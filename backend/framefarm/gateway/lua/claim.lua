-- Hands the worker the best part it may render, under a fresh lease.
-- ARGV: worker_id, owner, lease_ms, max_attempts, scan_limit, worker_ttl_s, secret, then held job ids
-- (`owner`: the caller's token must be the one that registered the worker; `secret`: 128
-- random bits from the caller, Redis's math.random is no secure source; held jobs: whose
-- scene the worker holds loaded, preferred among jobs of the best priority)
-- Returns {'ok', pid, token, deadline, index, start, count, step, attempts, job's fields (HGETALL)}
-- | {'empty'} | {'unknown_worker'} | {'not_your_worker'}
local wid = ARGV[1]
local lease_ms, max_attempts, scan = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()

-- Parts sized by time (jobs.py: a job with `target_ms`): the part just popped keeps the frames
-- that fill the target at the job's time per frame (the workers' stats, else the leases' wall
-- time; none yet: `first_frames`), at most its share of the job's queued frames among the live
-- workers' slots (so every slot gets some, and parts shrink towards the end), at least `min_frames`;
-- the rest of its frames become
-- a new part, index parts_total, queued behind the job's others. A finishing part, or one
-- leased before (a retry), is never cut.
local function carve(pid, job_id, slots)
  local jk = k_job(job_id)
  local j = redis.call('HMGET', jk, 'target_ms', 'stat_frames', 'stat_seconds', 'wall_frames', 'wall_ms',
    'first_frames', 'min_frames', 'parts_total', 'step')
  if not j[1] then return end
  local pk = k_part(pid)
  local p = redis.call('HMGET', pk, 'count', 'start', 'kind', 'leased_at')
  if p[3] or p[4] then return end  -- a part leased before (now retried) keeps its frames
  local count = tonumber(p[1])
  local take = tonumber(j[6])
  local ms = nil
  if tonumber(j[2] or '0') > 0 then ms = tonumber(j[3]) * 1000 / tonumber(j[2])
  elseif tonumber(j[4] or '0') > 0 then ms = tonumber(j[5]) / tonumber(j[4]) end
  if ms then
    take = math.floor(tonumber(j[1]) / math.max(ms, 1))
    -- The share is of the job's queued frames, not only this part's: a job in preview order
    -- (ordering.py) has several runs queued, and sharing each run alone would cut every one of
    -- them into ever smaller parts. A timed job's queue is short (its first frames and runs).
    local left = count
    for _, i in ipairs(redis.call('ZRANGE', k_job_queue(job_id), 0, 63)) do
      left = left + tonumber(redis.call('HGET', k_part(job_id .. ':' .. i), 'count') or '0')
    end
    -- Each live worker counted with the claiming worker's slots: a sum over all of them would cost a
    -- call per worker on every claim, and a farm's workers mostly share one kind. A worker that
    -- claims more slots than it has only gets smaller parts, never below `min_frames`.
    take = math.min(take, math.ceil(left / math.max(1, redis.call('ZCARD', K_WORKERS) * slots)))
  end
  take = math.max(take, tonumber(j[7]), 1)
  if take >= count then return end
  local idx = tonumber(j[8])
  local rest = job_id .. ':' .. idx
  redis.call('HSET', jk, 'parts_total', idx + 1)
  redis.call('HSET', pk, 'count', take)
  redis.call('HSET', k_part(rest), 'job', job_id, 'index', idx, 'start', tonumber(p[2]) + take * tonumber(j[9]),
    'count', count - take, 'step', j[9], 'attempts', 0)
  enqueue(rest, job_id)
end
reap_expired(now, max_attempts, 100)
local w = redis.call('HMGET', k_worker(wid), 'owner', 'blender_version', 'slots')
if not w[1] then return {'unknown_worker'} end
if w[1] ~= ARGV[2] then return {'not_your_worker'} end
local version = tonumber(w[2])
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
-- A job the worker holds loaded wins over the head job when it has the same priority (the
-- score's part above the submission sequence, commit_job.lua): never over a higher one.
if best_job and #ARGV > 7 then
  local band = math.floor(best_score / 2199023255552)
  for i = 8, #ARGV do
    local jid = ARGV[i]
    local v = redis.call('HGET', k_job(jid), 'min_version')
    local sc = v and tonumber(v) <= version and redis.call('ZSCORE', k_queue(v), jid)
    if sc and math.floor(tonumber(sc) / 2199023255552) == band
        and redis.call('SISMEMBER', k_block(jid), wid) == 0 and can_take(jid) then
      best_job, best_score, best_q = jid, tonumber(sc), k_queue(v)
      break
    end
  end
end
if not best_job then return {'empty'} end
-- The job's lowest queued part; the job leaves the line with its last one.
local popped = redis.call('ZPOPMIN', k_job_queue(best_job))
if redis.call('EXISTS', k_job_queue(best_job)) == 0 then redis.call('ZREM', best_q, best_job) end
if #popped == 0 then return {'empty'} end  -- not reached: a job is in line only with queued parts
local pid = best_job .. ':' .. popped[1]
carve(pid, best_job, math.max(1, tonumber(w[3]) or 1))
-- The token leads with the fence number, which only grows, so a token still tells which
-- lease came later; the secret after it is what makes the token unguessable.
local fence = redis.call('INCR', K_FENCE)
local token = fence .. '-' .. ARGV[7]
local deadline = now + lease_ms
local pk = k_part(pid)
redis.call('HSET', pk, 'state', 'leased', 'worker', wid, 'token', token, 'deadline', deadline, 'leased_at', now)
redis.call('ZADD', K_LEASES, deadline, pid)
redis.call('SADD', k_wparts(wid), pid)
if redis.call('HGET', k_job(best_job), 'status') == 'queued' then
  redis.call('HSET', k_job(best_job), 'status', 'running', 'started_at', now)
end
touch_job(best_job)
local p = redis.call('HMGET', pk, 'index', 'start', 'count', 'step', 'attempts')
return {'ok', pid, token, tostring(deadline), p[1], p[2], p[3], p[4], p[5], redis.call('HGETALL', k_job(best_job))}
