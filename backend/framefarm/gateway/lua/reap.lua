-- ARGV: max_attempts.  Returns how many expired leases were handled.
return reap_expired(now_ms(), tonumber(ARGV[1]), 500)
