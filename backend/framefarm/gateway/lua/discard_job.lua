-- Deletes up to `limit` parts of a staged job that will never be committed (its
-- submission was refused, or its gateway died while writing it). The first call
-- ends the staging, so a writer still running stops at its next batch.
-- ARGV: job_id, limit.  Returns how many parts are left (0: nothing is left behind).
local job_id = ARGV[1]
if not redis.call('ZSCORE', K_STAGING, job_id) then return 0 end
redis.call('ZADD', K_STAGING, 'XX', 0, job_id)
local left = 0
for _, q in ipairs({k_job_queue(job_id), k_job_held(job_id)}) do  -- held: an estimate's (stage_parts.lua)
  local batch = redis.call('ZRANGE', q, 0, tonumber(ARGV[2]) - 1)
  for _, idx in ipairs(batch) do redis.call('DEL', k_part(job_id .. ':' .. idx)) end
  if #batch > 0 then redis.call('ZREM', q, unpack(batch)) end
  left = left + redis.call('ZCARD', q)
end
if left == 0 then redis.call('ZREM', K_STAGING, job_id) end
return left
