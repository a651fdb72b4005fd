-- ARGV: lock_key, token, ttl_ms.  Extends a lock only while we still hold it.
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('PEXPIRE', ARGV[1], ARGV[3]) end
return 0
