-- Checks and spends all of one request's quota descriptors in one atomic step.
--
-- KEYS, three per descriptor i (all sharing the subject's hash tag in Cluster):
--   KEYS[3i-2] counter, KEYS[3i-1] overrides hash, KEYS[3i] descriptor index hash
-- ARGV[1] mode: "spend" (check, then spend all or none), "peek" (read only),
--         "force" (spend without checking: outage re-sync), "refund" (give back)
-- ARGV[2] now in ms, from the caller's clock (injectable; Redis TIME is not used
--         so that calendar rollovers are testable and all workers agree on windows)
-- ARGV[3] the caller's plan, or "*" to skip the plan-override check
-- ARGV[4] n, the number of descriptors; then 8 values per descriptor:
--   name, algorithm ("tb" token bucket as GCRA | "day" / "month" calendar counter),
--   limit, window_ms, burst, cost, shadow (0|1), calendar reset in ms
-- KEYS[3n+1], optional: a token's revocation key (pdp/authn/revocation.py). It
--   is looked up first; when it exists the token is revoked: reply {3, ""} and
--   nothing is spent. (The decision's one round trip instead of two.)
-- Reply: {verdict, plan, then 6 integers per descriptor:
--         allowed, remaining, reset_ms, retry_after_ms, effective limit, effective burst}
--   verdict 1 = allowed, 0 = rejected (nothing spent), 2 = plan override differs
--   (nothing spent; the caller re-evaluates the policy with that plan), 3 = the
--   token is revoked (nothing spent).
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local caller_plan = ARGV[3]
local n = tonumber(ARGV[4])

if #KEYS > 3 * n and redis.call("EXISTS", KEYS[3 * n + 1]) == 1 then return {3, ""} end

local check_plan = mode == "spend" and caller_plan ~= "*"
local states = {}
local rejected = false
for i = 1, n do
  local a = 4 + (i - 1) * 8
  local name, alg = ARGV[a + 1], ARGV[a + 2]
  local limit, window = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local burst, cost = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local shadow, cal_reset = ARGV[a + 7] == "1", tonumber(ARGV[a + 8])
  local ckey, okey = KEYS[3 * i - 2], KEYS[3 * i - 1]
  if mode == "peek" then cost = 0 end

  local o
  if i == 1 and check_plan then
    -- The plan override rides along with the first descriptor's overrides.
    o = redis.call("HMGET", okey, name .. ":limit", name .. ":burst", "@plan")
    if o[3] and o[3] ~= caller_plan then return {2, o[3]} end
  else
    o = redis.call("HMGET", okey, name .. ":limit", name .. ":burst")
  end
  if o[1] then
    limit = tonumber(o[1])
    -- An overridden limit without its own burst keeps the bucket at least that big.
    if not o[2] and burst < limit then burst = limit end
  end
  if o[2] then burst = tonumber(o[2]) end

  local st = {allowed = 1, limit = limit, burst = burst, retry = 0}
  -- The policy's own numbers: kept in the counter and the index, so the admin
  -- API can read a subject's quotas, and so a change (a new plan) re-indexes.
  local spec = alg .. "|" .. ARGV[a + 3] .. "|" .. ARGV[a + 4] .. "|" .. ARGV[a + 5]
  local raw = redis.call("GET", ckey)
  local level, rest = nil, nil
  if raw then
    local sep = string.find(raw, "|", 1, true)
    if sep then level, rest = string.sub(raw, 1, sep - 1), string.sub(raw, sep + 1) end
  end
  if alg == "tb" then
    -- GCRA: the theoretical arrival time (tat) encodes the bucket's level. It is
    -- stored as "tat|t|spec" with the emission interval t it was measured in, so
    -- that when an override changes the rate the tokens already used carry over.
    local t = window / limit
    local cap = burst * t
    local tat = now
    local spec_then = nil
    if level and rest then
      local sep = string.find(rest, "|", 1, true)
      if sep then
        tat = tonumber(level)
        local t_then = tonumber(string.sub(rest, 1, sep - 1))
        spec_then = string.sub(rest, sep + 1)
        if t_then ~= t and tat > now then tat = now + (tat - now) / t_then * t end
      end
    end
    st.fresh = spec_then ~= spec
    if tat < now then tat = now end
    local new_tat = tat + cost * t
    if mode == "refund" then
      new_tat = math.max(now, tat - cost * t)
    elseif mode ~= "force" and new_tat - now > cap then
      st.allowed = 0
      st.retry = math.ceil(new_tat - now - cap)
      new_tat = tat
    end
    st.value = tostring(new_tat) .. "|" .. tostring(t) .. "|" .. spec
    st.ttl = math.ceil(new_tat - now)
    st.remaining = math.max(0, math.floor((cap - (new_tat - now)) / t + 1e-9))
    st.reset = math.ceil(new_tat - now)
  else
    -- Calendar counter: "count|spec".
    local count = tonumber(level or "0")
    st.fresh = rest ~= spec
    local new_count = count + cost
    if mode == "refund" then
      new_count = math.max(0, count - cost)
    elseif mode ~= "force" and new_count > limit then
      st.allowed = 0
      st.retry = cal_reset
      new_count = count
    end
    st.value = tostring(new_count) .. "|" .. spec
    st.ttl = cal_reset
    st.remaining = math.max(0, limit - new_count)
    st.reset = cal_reset
  end
  if st.allowed == 0 and not shadow then rejected = true end
  st.ckey, st.ikey, st.changed = ckey, KEYS[3 * i], st.allowed == 1 and cost > 0
  st.index = spec
  st.name = name
  states[i] = st
end

local reply = {rejected and 0 or 1, ""}
if mode ~= "peek" and not rejected then
  for i = 1, n do
    local st = states[i]
    if st.changed then
      if st.ttl > 0 then
        redis.call("SET", st.ckey, st.value, "PX", st.ttl)
      else
        redis.call("DEL", st.ckey)
      end
      -- The index lets the admin API read a subject's quotas without the policy.
      -- Written when a counter starts (a new window, a bucket that had refilled)
      -- or its policy numbers change, not on every request: it keeps the hot
      -- path at three commands.
      if st.fresh then
        redis.call("HSET", st.ikey, st.name, st.index)
        local keep = math.max(st.ttl, 86400000)
        if redis.call("PTTL", st.ikey) < keep then redis.call("PEXPIRE", st.ikey, keep) end
      end
    end
  end
end
for i = 1, n do
  local st = states[i]
  table.insert(reply, st.allowed)
  table.insert(reply, st.remaining)
  table.insert(reply, st.reset)
  table.insert(reply, st.retry)
  table.insert(reply, st.limit)
  table.insert(reply, st.burst)
end
return reply
