-- Takes webhook entries due now, moving each one's time on by a lease so that no other
-- gateway process takes it meanwhile (one that dies mid-delivery leaves it due again).
-- ARGV: lease_ms, limit.  Returns the entries taken.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K_WEBHOOKS_DUE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  redis.call('ZADD', K_WEBHOOKS_DUE, now + tonumber(ARGV[1]), entry)
end
return due
