-- Records a job and queues its parts in one step, so no claim ever sees half a job.
-- ARGV: job_id, owner, idem_key ('' for none), idem_ttl_s, min_version, priority,
--       start, step, frame_count, chunk, parts_total, manifest_json, then job field/value pairs.
local job_id, owner, idem = ARGV[1], ARGV[2], ARGV[3]
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then return {0, existing} end
end
local minver, priority = ARGV[5], tonumber(ARGV[6])
local start, step, count = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local chunk, n = tonumber(ARGV[10]), tonumber(ARGV[11])
local now = now_ms()
-- Score: higher priority first, then submission order; exact in a double (< 2^53).
local seq0 = redis.call('INCRBY', P .. 'seq', n) - n
local base = (1000 - priority) * 2199023255552
for i = 0, n - 1 do
  local pid = job_id .. ':' .. i
  local score = string.format('%.0f', base + seq0 + i)
  local cnt = math.min(chunk, count - i * chunk)
  redis.call('HSET', k_part(pid), 'job', job_id, 'index', i, 'start', start + i * chunk * step,
    'count', cnt, 'step', step, 'state', 'queued', 'attempts', 0, 'score', score)
  redis.call('ZADD', k_queue(minver), score, pid)
end
redis.call('SADD', P .. 'queues', minver)
local jk = k_job(job_id)
for i = 13, #ARGV, 2 do redis.call('HSET', jk, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', jk, 'id', job_id, 'owner', owner, 'status', 'queued', 'created_at', now,
  'rev', 0, 'frames_done', 0, 'parts_done', 0, 'parts_total', n, 'min_version', minver)
redis.call('SET', jk .. ':manifest', ARGV[12])
redis.call('ZADD', P .. 'owner:' .. owner .. ':jobs', now, job_id)
redis.call('ZADD', P .. 'jobs', now, job_id)
if idem ~= '' then redis.call('SET', idem, job_id, 'EX', tonumber(ARGV[4])) end
redis.call('PUBLISH', K_EVENTS, 'work')
return {1, job_id}
