-- Moves parts written by Framefarm's first Redis layout into this one. There, a Blender
-- version's queue held part ids (`job:n`) and each part hash carried its queue score;
-- here the queue holds jobs, each job its own queue of part indexes, and the job hash
-- carries the score that a requeue puts it back in line with.
-- ARGV: part ids found in a version's queue or among the leases (upgrade.py).
-- Idempotent: an upgraded part has no `score` field left, so running it again (or on
-- two gateways at once) moves nothing twice. Returns how many parts it upgraded.
local upgraded = 0
for i = 1, #ARGV do
  local pid = ARGV[i]
  local pk = k_part(pid)
  local pscore = redis.call('HGET', pk, 'score')
  local job_id, idx = job_of(pid), index_of(pid)
  local jk = k_job(job_id)
  local j = redis.call('HMGET', jk, 'min_version', 'score')
  if pscore and job_id and j[1] then
    -- The job goes in line where its earliest part stood.
    if not j[2] or tonumber(pscore) < tonumber(j[2]) then redis.call('HSET', jk, 'score', pscore) end
    local q = k_queue(j[1])
    if redis.call('ZREM', q, pid) == 1 then
      redis.call('ZADD', k_job_queue(job_id), idx, idx)
      redis.call('ZADD', q, redis.call('HGET', jk, 'score'), job_id)
    end
    redis.call('HDEL', pk, 'score')
    upgraded = upgraded + 1
  end
end
return upgraded
