-- A submission holds its scene files before it checks that they exist, so clean-up can
-- never delete one between that check and the job (cleanup.py). A file being deleted
-- right now cannot be held: such files are returned, nothing is held, and the
-- submission reports them missing (the client uploads them again).
-- ARGV: job_id, sha...   Returns the shas being deleted; empty when the hold was taken.
local job_id = ARGV[1]
local blocked = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', k_deleting(ARGV[i])) == 1 then blocked[#blocked + 1] = ARGV[i] end
end
if #blocked > 0 then return blocked end
local held = k_held(job_id)
for i = 2, #ARGV do
  if redis.call('SADD', held, ARGV[i]) == 1 then redis.call('HINCRBY', K_FILE_REFS, ARGV[i], 1) end
end
redis.call('ZADD', K_FILE_HOLDERS, now_ms(), job_id)
return blocked
