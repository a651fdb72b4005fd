-- Writes one batch of a staged job's parts, as split by jobs.py, into the job's own
-- queue. Batches keep each script short, so a job of 100,000 parts never blocks Redis.
-- KEYS: optionally where the parts go: the job's queue (the default) or its held parts
-- (an estimate's frames after its samples, handed out once it is resumed: estimates.py).
-- ARGV: job_id, step, then index, start, count triples.
-- Returns 1, or 0 when the staging is gone (past its deadline, or discarded).
local job_id, step = ARGV[1], ARGV[2]
local deadline = redis.call('ZSCORE', K_STAGING, job_id)
if not deadline or tonumber(deadline) < now_ms() then return 0 end
local q = k_job_queue(job_id)
if KEYS[1] == k_job_held(job_id) then q = KEYS[1] end
for i = 3, #ARGV, 3 do
  local idx = ARGV[i]
  redis.call('HSET', k_part(job_id .. ':' .. idx), 'job', job_id, 'index', idx, 'start', ARGV[i + 1],
    'count', ARGV[i + 2], 'step', step, 'state', 'queued', 'attempts', 0)
  redis.call('ZADD', q, idx, idx)
end
return 1
