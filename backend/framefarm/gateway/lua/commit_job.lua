-- Makes a staged job real in one O(log n) step: its record, and its place in its
-- Blender version's queue of jobs (score: higher priority first, then submission
-- order; exact in a double, < 2^53). Claims see it from here on, whole.
-- ARGV: job_id, owner, idem_key ('' for none), idem_ttl_s, min_version, priority,
--       parts_total, manifest_json, then job field/value pairs.
-- Returns {'created', job_id} | {'exists', job_id} | {'gone'} (the staging expired or
-- is incomplete: the caller discards it).
local job_id, owner, idem = ARGV[1], ARGV[2], ARGV[3]
local minver, priority, n = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local deadline = redis.call('ZSCORE', K_STAGING, job_id)
if not deadline or tonumber(deadline) < now then return {'gone'} end
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then return {'exists', existing} end
end
if redis.call('ZCARD', k_job_queue(job_id)) + redis.call('ZCARD', k_job_held(job_id)) ~= n then return {'gone'} end
redis.call('ZREM', K_STAGING, job_id)
local score = string.format('%.0f', (1000 - priority) * 2199023255552 + redis.call('INCR', K_SEQ))
local jk = k_job(job_id)
for i = 9, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', jk, 'id', job_id, 'owner', owner, 'status', 'queued', 'created_at', now, 'rev', 0,
  'frames_done', 0, 'parts_done', 0, 'parts_total', n, 'min_version', minver, 'score', score)
redis.call('SET', k_manifest(job_id), ARGV[8])
redis.call('ZADD', k_owner_jobs(owner), now, job_id)
redis.call('ZADD', K_ALL_JOBS, now, job_id)
if idem ~= '' then redis.call('SET', idem, job_id, 'EX', tonumber(ARGV[4])) end
redis.call('SADD', K_QUEUES, minver)
redis.call('ZADD', k_queue(minver), score, job_id)
redis.call('PUBLISH', K_EVENTS, 'work')
return {'created', job_id}
