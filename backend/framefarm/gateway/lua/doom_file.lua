-- Claims an unheld scene file for deletion, in the same step that checks no job holds
-- it: from here until the caller has deleted it, hold_files refuses it.
-- ARGV: sha, grace_ms, deleting_ttl_s.  Returns 1 when the caller may delete the file.
local sha = ARGV[1]
if redis.call('HEXISTS', K_FILE_REFS, sha) == 1 then return 0 end
local released = redis.call('HGET', K_FILE_RELEASED, sha)
if released and now_ms() - tonumber(released) < tonumber(ARGV[2]) then return 0 end
redis.call('SET', k_deleting(sha), 1, 'EX', tonumber(ARGV[3]))
redis.call('HDEL', K_FILE_RELEASED, sha)
return 1
