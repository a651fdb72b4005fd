-- Renews the worker's presence and the leases it still rightfully holds.
-- ARGV: worker_id, lease_ms, worker_ttl_s, then part_id, token pairs.
-- Returns {'ok', abandon...}: parts the worker must stop (cancelled, failed or
-- reassigned) | {'unknown_worker'}.
local wid, lease_ms = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', k_worker(wid)) == 0 then return {'unknown_worker'} end
local now = now_ms()
renew_worker(wid, now, tonumber(ARGV[3]))
local out = {'ok'}
for i = 4, #ARGV, 2 do
  local pid, token = ARGV[i], ARGV[i + 1]
  -- An id that names no part (no ':<index>') is simply abandoned.
  local job_id = job_of(pid)
  local status = job_id and redis.call('HGET', k_job(job_id), 'status')
  if status == 'running' and holds_lease(pid, token, wid) then
    local deadline = now + lease_ms
    redis.call('HSET', k_part(pid), 'deadline', deadline)
    redis.call('ZADD', K_LEASES, 'XX', deadline, pid)
  else
    table.insert(out, pid)
  end
end
return out
