-- ARGV: job_id.  Returns {'cancelled'} or {'unchanged', current_status}
if end_job(ARGV[1], 'cancelled', 'cancelled by user') then return {'cancelled'} end
return {'unchanged', redis.call('HGET', k_job(ARGV[1]), 'status')}
