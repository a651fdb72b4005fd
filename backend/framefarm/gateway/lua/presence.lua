-- Keeps present the workers whose claims one gateway process holds waiting on open
-- connections (workers.py, WaitingClaims): an idle worker sends nothing else while its claim
-- waits, for minutes. A worker unregistered meanwhile stays gone.
-- ARGV: worker_ttl_s, then worker ids.  Returns how many were still registered.
local ttl_s, now, renewed = tonumber(ARGV[1]), now_ms(), 0
for i = 2, #ARGV do
  if redis.call('EXISTS', k_worker(ARGV[i])) == 1 then
    renew_worker(ARGV[i], now, ttl_s)
    renewed = renewed + 1
  end
end
return renewed
