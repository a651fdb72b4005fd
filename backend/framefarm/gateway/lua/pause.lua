-- Pauses a queued or running job: it leaves its Blender version's queue, so claims hand
-- out none of its parts; parts already leased finish and count as usual. Its own queue
-- is kept, and `enqueue` (_lib.lua) keeps a paused job out of line when a part comes back.
-- ARGV: job_id.  Returns {'paused'} | {'unchanged', status} (already paused) | {'wrong_state', status}
local job_id = ARGV[1]
local jk = k_job(job_id)
local j = redis.call('HMGET', jk, 'status', 'min_version', 'paused')
if j[1] ~= 'queued' and j[1] ~= 'running' then return {'wrong_state', j[1] or ''} end
if j[3] == '1' then return {'unchanged', j[1]} end
redis.call('HSET', jk, 'paused', '1')
redis.call('ZREM', k_queue(j[2]), job_id)
touch_job(job_id)
return {'paused'}
