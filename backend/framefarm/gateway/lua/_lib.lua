-- Shared by every Framefarm script. Keys mirror framefarm/gateway/keys.py.
local P = 'ff:'
local function k_job(id) return P .. 'job:' .. id end
local function k_part(pid) return P .. 'part:' .. pid end
local function k_worker(wid) return P .. 'worker:' .. wid end
local function k_wparts(wid) return P .. 'worker:' .. wid .. ':parts' end
local function k_queue(v) return P .. 'queue:' .. v end
local function k_block(id) return P .. 'job:' .. id .. ':block' end
local function k_wfail(id) return P .. 'job:' .. id .. ':wfail' end
local K_LEASES = P .. 'leases'
local K_ASSEMBLY = P .. 'assembly'
local K_EVENTS = P .. 'events'
-- Scene-file holds and archive retention (cleanup.py).
local K_FILE_REFS = P .. 'files:refs'
local K_FILE_HOLDERS = P .. 'files:holders'
local K_FILE_RELEASED = P .. 'files:released'
local K_ARCHIVES = P .. 'archives'
local function k_held(id) return P .. 'job:' .. id .. ':files' end
local function k_deleting(sha) return P .. 'files:deleting:' .. sha end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_of(pid) return string.match(pid, '^(.*):%d+$') end

-- Every change a client may be waiting for bumps the job's revision.
local function touch_job(job_id)
  redis.call('HINCRBY', k_job(job_id), 'rev', 1)
  redis.call('PUBLISH', K_EVENTS, 'job:' .. job_id)
end

local function enqueue(pid, job_id)
  local minver = redis.call('HGET', k_job(job_id), 'min_version')
  local score = redis.call('HGET', k_part(pid), 'score')
  redis.call('HSET', k_part(pid), 'state', 'queued')
  redis.call('HDEL', k_part(pid), 'worker', 'token', 'deadline')
  redis.call('ZADD', k_queue(minver), score, pid)
end

-- Ends a job that can no longer finish: its queued parts leave the queue; parts
-- still leased are abandoned by their workers at the next heartbeat.
local function end_job(job_id, status, err)
  local jk = k_job(job_id)
  local cur = redis.call('HGET', jk, 'status')
  if cur ~= 'queued' and cur ~= 'running' then return false end
  local minver = redis.call('HGET', jk, 'min_version')
  local n = tonumber(redis.call('HGET', jk, 'parts_total'))
  for i = 0, n - 1 do
    local pid = job_id .. ':' .. i
    if redis.call('ZREM', k_queue(minver), pid) == 1 then
      redis.call('HSET', k_part(pid), 'state', status)
    end
  end
  redis.call('HSET', jk, 'status', status, 'finished_at', now_ms())
  if err then redis.call('HSET', jk, 'error', err) end
  touch_job(job_id)
  return true
end

-- A part that did not finish goes back to the queue with its attempt counted,
-- or fails its job once it has used up its attempts.
local function retry_or_fail(pid, err, max_attempts, count_attempt)
  local job_id = job_of(pid)
  local pk = k_part(pid)
  local attempts = tonumber(redis.call('HGET', pk, 'attempts') or '0')
  if count_attempt then
    attempts = redis.call('HINCRBY', pk, 'attempts', 1)
  end
  redis.call('HSET', pk, 'error', err)
  local status = redis.call('HGET', k_job(job_id), 'status')
  if status ~= 'queued' and status ~= 'running' then
    redis.call('HSET', pk, 'state', status)
    return 'ended'
  end
  if attempts >= max_attempts then
    redis.call('HSET', pk, 'state', 'failed')
    local idx = string.match(pid, ':(%d+)$')
    end_job(job_id, 'failed', 'part ' .. idx .. ' failed ' .. attempts .. ' times; last error: ' .. err)
    return 'failed'
  end
  enqueue(pid, job_id)
  touch_job(job_id)
  redis.call('PUBLISH', K_EVENTS, 'work')
  return 'requeued'
end

-- Leases past their deadline on Redis's clock go back to the queue. Whichever
-- gateway runs this first does the work; the rest find nothing.
local function reap_expired(now, max_attempts, limit)
  local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, limit)
  for _, pid in ipairs(expired) do
    redis.call('ZREM', K_LEASES, pid)
    local pk = k_part(pid)
    if redis.call('HGET', pk, 'state') == 'leased' then
      local wid = redis.call('HGET', pk, 'worker')
      if wid then redis.call('SREM', k_wparts(wid), pid) end
      retry_or_fail(pid, 'lease expired: worker ' .. (wid or '?') .. ' stopped responding', max_attempts, true)
    end
  end
  return #expired
end

-- The part a lease-holding call names, if the token still fences it.
local function leased_part(pid, token)
  local pk = k_part(pid)
  local p = redis.call('HMGET', pk, 'state', 'token', 'worker')
  if p[1] ~= 'leased' or p[2] ~= token then return nil end
  return p[3]
end
