-- Token bucket: take one token from the bucket at KEYS[1].
--
-- Why one script: every gateway replica updates the same bucket. Read-then-write from a client
-- (HGET ... then HSET) lets two replicas read the same count and both spend the last token; a
-- Lua script runs atomically in Redis, so each request sees the state the previous one left.
-- Why Redis's clock: replicas' clocks differ; TIME inside the script gives them all one clock.
--
-- KEYS[1]  the bucket's hash: tokens (float), ts (seconds, float, Redis time of the last update)
-- KEYS[2..] keys read along for a later stage of the same request (gateway/readalong.py): their
--           values follow the decision, with the Redis time, so one round trip serves both
-- ARGV[1]  rate: tokens added per second (> 0)
-- ARGV[2]  burst: the bucket's size (>= 1)
-- Returns {allowed (1|0), remaining (whole tokens left), reset, retry_after}; reset is the
-- seconds until the bucket is full again, retry_after the seconds until one token is there
-- (0 when allowed). Both are strings: Redis would truncate a Lua number to an integer. Then
-- the Redis time {seconds, microseconds} and the value of each read-along key (nil if absent).
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])

local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end

-- A clock that steps back (a failover to another Redis) must not drain the bucket.
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate)

local allowed = 0
local retry_after = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_after = (1 - tokens) / rate
end
local reset = (burst - tokens) / rate

redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
-- Past the time to refill, the bucket is full: an absent key means exactly that.
redis.call('PEXPIRE', KEYS[1], math.ceil(reset * 1000) + 1000)

local reply = {allowed, math.floor(tokens), tostring(reset), tostring(retry_after),
               time[1], time[2]}
for i = 2, #KEYS do
  reply[#reply + 1] = redis.call('GET', KEYS[i])
end
return reply
