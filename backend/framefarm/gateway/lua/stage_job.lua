-- Starts writing a job: it is staged (invisible to claims and to clients) until
-- commit_job.lua; a staging left past its deadline is discarded (discard_job.lua).
-- ARGV: job_id, idem_key ('' for none), ttl_ms.
-- Returns {'staged'} | {'exists', job_id} (a retried submission: that job already exists)
local job_id, idem = ARGV[1], ARGV[2]
if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing then return {'exists', existing} end
end
redis.call('ZADD', K_STAGING, now_ms() + tonumber(ARGV[3]), job_id)
return {'staged'}
