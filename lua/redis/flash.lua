-- redis/flash.lua: the server-side scripts of the flash purchase (sources; flash.lua loads them with
-- host.redis.script). Each runs atomically in Redis, so every decision below is made on one state.
--
-- Keys of product P, all under the hash tag {p:P} (one slot: the scripts run on Redis Cluster):
--   {p:P}:s       hash  remaining, ver, paused (0/1), starts, ends (ms since the epoch), limit (per
--                       user), ended (0/1), held (HELD + PAYING), seq (entries so far: order id = P * 10^9
--                       + seq), initial, paid -- created in that order, the entry's fields first (a small
--                       hash is a listpack, searched from its head)
--   {p:P}:buyers  hash  user id -> units held, being paid or paid (the per-user limit)
--   {p:P}:holds   hash  order id -> "STATE|uid|deadline_ms|mysql_order_id"
--   {p:P}:dl      zset  order id -> when the sweeper looks at it (ms): a HELD hold's deadline, a PAYING
--                       hold's settle time (pay_begin + settle ms; the sweeper hands it to the settle)
--   {p:P}:ev      stream of order events, one field each: the event (HELD, EXPIRED, CANCELLED, FAILED,
--                 PAID) -> "order id|user id"; the product is the key's, the time the entry id's (ms,
--                 Redis clock)
--   {p:P}:ik:<uid>:<key>, {p:P}:pk:<uid>:<key>  Idempotency-Key records of entry and pay (only when the
--                 request carried the header)
-- Every change of remaining or of paused bumps ver and returns it with remaining, so the caller can
-- update the stock gate (host.stock) with a version that orders the updates. Times are the Redis
-- clock: read with TIME by every script but the entry, which is handed it by the host (flash.lua
-- redis_now: the host's clock plus its offset to the Redis clock, taken at its lower bound), so
-- the entry window, a hold's deadline, the pay and the sweeper all read one clock.
-- A unit coming back is published on the channel "flash:stock" as "P|remaining|ver".
local _M = {}

-- Shared by the scripts that return a unit: release(KEYS s, holds, dl, buyers, ev; order id, uid,
-- deadline, the new state, product id) -> remaining, ver, paused (0/1).
local NOW = [==[
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
]==]
local RELEASE = NOW .. [==[
local function release(k, oid, uid, dl, state, pid)
  redis.call('HSET', k.holds, oid, state .. '|' .. uid .. '|' .. dl .. '|')
  redis.call('ZREM', k.dl, oid)
  local remaining = redis.call('HINCRBY', k.s, 'remaining', 1)
  redis.call('HINCRBY', k.s, 'held', -1)
  local ver = redis.call('HINCRBY', k.s, 'ver', 1)
  if redis.call('HINCRBY', k.buyers, uid, -1) <= 0 then redis.call('HDEL', k.buyers, uid) end
  redis.call('XADD', k.ev, '*', state, oid .. '|' .. uid)
  local paused = tonumber(redis.call('HGET', k.s, 'paused') or '0')
  -- %d: Redis Lua numbers are doubles, and `..` would write a version past 14 digits as 1.7e+15
  redis.call('PUBLISH', 'flash:stock', string.format('%d|%d|%d|%d', pid, remaining, ver, paused))
  return remaining, ver, paused
end
local function parse(h)
  return string.match(h, '^(%u+)|(%d+)|(%d+)|(%d*)$')
end
]==]

-- entry: KEYS s, buyers, holds, dl, ev [, idem]; ARGV uid, now ms, deadline ms (now + hold), product id
-- [, idem hash, idem ttl ms] (the idempotency pair only when the request carried a key)
-- -> {'OK'|'DONE', order id, deadline ms, remaining, ver, paused}
--    | {'ERR', code, starts ms, remaining, ver, paused}
--    | {'NOINIT'}   (numbers as integers or their decimal strings: the caller converts)
-- Every check comes before the first write: the window, the flags and the stock from one HMGET, then
-- the member's count -- for a limit of 1 (a flash sale's usual) HSETNX, which checks and marks in one
-- command and writes nothing when the member has a unit already. This script is what Redis runs per
-- entry, so it is kept to the fewest commands (6) and the least work in Redis's one thread: the
-- host hands it the time and the deadline as text (no TIME, no number formatting here), values
-- read only to be handed back stay strings, and the writes are one HSET of the product's counters
-- (the order counter is one of them), the hold, its deadline and the event.
_M.entry = [==[
local s = KEYS[1]
local st = redis.call('HMGET', s, 'remaining', 'ver', 'paused', 'starts', 'ends', 'limit', 'ended', 'held', 'seq')
local remaining = tonumber(st[1])
if not remaining then return {'NOINIT'} end
if KEYS[6] then
  local rec = redis.call('GET', KEYS[6])
  if rec then
    local h, oid, dl = string.match(rec, '^(%x+)|(%d+)|(%d+)$')
    if h ~= ARGV[5] then return {'ERR', 'IDEMPOTENCY_KEY_REUSED', 0, remaining, st[2], st[3]} end
    return {'DONE', oid, dl, remaining, st[2], st[3]}
  end
end
local now = tonumber(ARGV[2])
if now < tonumber(st[4]) then return {'ERR', 'SALE_NOT_OPEN', st[4], remaining, st[2], st[3]} end
if now >= tonumber(st[5]) or st[7] == '1' then return {'ERR', 'SALE_CLOSED', 0, remaining, st[2], st[3]} end
if st[3] == '1' then return {'ERR', 'SALE_PAUSED', 0, remaining, st[2], st[3]} end
if remaining <= 0 then return {'ERR', 'OUT_OF_STOCK', 0, remaining, st[2], st[3]} end
local uid = ARGV[1]
if st[6] == '1' then
  if redis.call('HSETNX', KEYS[2], uid, '1') == 0 then
    return {'ERR', 'ALREADY_PURCHASED', 0, remaining, st[2], st[3]}
  end
else
  if tonumber(redis.call('HGET', KEYS[2], uid) or '0') >= tonumber(st[6]) then
    return {'ERR', 'ALREADY_PURCHASED', 0, remaining, st[2], st[3]}
  end
  redis.call('HINCRBY', KEYS[2], uid, 1)
end
local fmt = string.format
local seq, ver, dl = st[9] + 1, st[2] + 1, ARGV[3]
local oid = ARGV[4] .. fmt('%09d', seq)
remaining = remaining - 1
redis.call('HSET', s, 'remaining', fmt('%d', remaining), 'ver', fmt('%d', ver), 'held', fmt('%d', st[8] + 1),
  'seq', fmt('%d', seq))
redis.call('HSET', KEYS[3], oid, 'HELD|' .. uid .. '|' .. dl .. '|')
redis.call('ZADD', KEYS[4], dl, oid)
redis.call('XADD', KEYS[5], '*', 'HELD', oid .. '|' .. uid)
if KEYS[6] then redis.call('SET', KEYS[6], ARGV[5] .. '|' .. oid .. '|' .. dl, 'PX', ARGV[6]) end
return {'OK', oid, dl, remaining, ver, st[3]}
]==]

-- pay_begin: KEYS s, holds, dl, buyers, ev, idem; ARGV order id, uid, idem hash, product id, settle ms
-- HELD and before its deadline -> PAYING: it cannot expire any more; its index entry now says when the
-- sweeper hands it to the settle (flash.lua), should the pay never finish (a worker killed mid-pay).
-- -> {'OK'} | {'DONE', status, mysql order id} (idempotent replay) | {'ERR', code, remaining, ver, paused}
--    (an overdue HELD hold is expired right here, so the refusal and the unit's return are one step)
_M.pay_begin = RELEASE .. [==[
local k = { s = KEYS[1], holds = KEYS[2], dl = KEYS[3], buyers = KEYS[4], ev = KEYS[5] }
local h = redis.call('HGET', k.holds, ARGV[1])
if not h then return {'ERR', 'ORDER_NOT_FOUND'} end
local state, uid, dl, moid = parse(h)
if uid ~= ARGV[2] then return {'ERR', 'ORDER_NOT_FOUND'} end
if ARGV[3] ~= '' then
  local rec = redis.call('GET', KEYS[6])
  if rec then
    local hh, status, id = string.match(rec, '^(%x+)|(%d+)|(%d*)$')
    if hh ~= ARGV[3] then return {'ERR', 'IDEMPOTENCY_KEY_REUSED'} end
    return {'DONE', tonumber(status), id}
  end
end
if state == 'PAID' then return {'ERR', 'ALREADY_PAID', moid} end
if state == 'EXPIRED' then return {'ERR', 'RESERVATION_EXPIRED'} end
if state ~= 'HELD' then return {'ERR', 'NOT_PAYMENT_PENDING'} end
if now_ms() >= tonumber(dl) then
  local remaining, ver, paused = release(k, ARGV[1], uid, dl, 'EXPIRED', ARGV[4])
  return {'ERR', 'RESERVATION_EXPIRED', remaining, ver, paused}
end
redis.call('HSET', k.holds, ARGV[1], 'PAYING|' .. uid .. '|' .. dl .. '|')
redis.call('ZADD', k.dl, now_ms() + tonumber(ARGV[5]), ARGV[1])
return {'OK'}
]==]

-- pay_failed: KEYS s, holds, dl, buyers, ev, idem; ARGV order id, uid, idem hash, idem ttl ms, product id
-- PAYING -> FAILED, the unit back. -> {remaining, ver, paused} | {} (not PAYING: nothing done)
_M.pay_failed = RELEASE .. [==[
local k = { s = KEYS[1], holds = KEYS[2], dl = KEYS[3], buyers = KEYS[4], ev = KEYS[5] }
local h = redis.call('HGET', k.holds, ARGV[1])
if not h then return {} end
local state, uid, dl = parse(h)
if state ~= 'PAYING' or uid ~= ARGV[2] then return {} end
local remaining, ver, paused = release(k, ARGV[1], uid, dl, 'FAILED', ARGV[5])
if ARGV[3] ~= '' then redis.call('SET', KEYS[6], ARGV[3] .. '|402|', 'PX', ARGV[4]) end
return {remaining, ver, paused}
]==]

-- pay_done: KEYS s, holds, ev, idem, dl; ARGV order id, uid, mysql order id, idem hash, idem ttl ms.
-- PAYING -> PAID (the order is in MySQL already). -> 1 | 0 (was not PAYING)
_M.pay_done = RELEASE .. [==[
local h = redis.call('HGET', KEYS[2], ARGV[1])
if not h then return 0 end
local state, uid, dl = parse(h)
if state ~= 'PAYING' or uid ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'PAID|' .. uid .. '|' .. dl .. '|' .. ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'held', -1)
redis.call('HINCRBY', KEYS[1], 'paid', 1)
redis.call('XADD', KEYS[3], '*', 'PAID', ARGV[1] .. '|' .. uid)
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4] .. '|200|' .. ARGV[3], 'PX', ARGV[5]) end
return 1
]==]

-- cancel: KEYS s, holds, dl, buyers, ev; ARGV order id, uid, product id
-- HELD -> CANCELLED, the unit back. -> {'OK', remaining, ver, paused} | {'GONE'} (already released)
--    | {'ERR', code}
_M.cancel = RELEASE .. [==[
local k = { s = KEYS[1], holds = KEYS[2], dl = KEYS[3], buyers = KEYS[4], ev = KEYS[5] }
local h = redis.call('HGET', k.holds, ARGV[1])
if not h then return {'ERR', 'ORDER_NOT_FOUND'} end
local state, uid, dl = parse(h)
if uid ~= ARGV[2] then return {'ERR', 'ORDER_NOT_FOUND'} end
if state == 'PAID' then return {'ERR', 'ALREADY_PAID'} end
if state == 'PAYING' then return {'ERR', 'NOT_PAYMENT_PENDING'} end
if state ~= 'HELD' then return {'GONE'} end
local remaining, ver, paused = release(k, ARGV[1], uid, dl, 'CANCELLED', ARGV[3])
return {'OK', remaining, ver, paused}
]==]

-- sweep: KEYS s, holds, dl, buyers, ev; ARGV max holds, product id, settle ms
-- Every HELD hold past its deadline -> EXPIRED, its unit back; each exactly once (the state is
-- checked here, under the script's atomicity). A PAYING hold past its settle time is returned for the
-- settle and its time pushed settle ms on (MySQL decides its fate, once: flash.lua settle).
-- -> {expired, remaining, ver, paused, ends ms, held, {order id, uid, ...} to settle} | {} (no state)
_M.sweep = RELEASE .. [==[
local k = { s = KEYS[1], holds = KEYS[2], dl = KEYS[3], buyers = KEYS[4], ev = KEYS[5] }
if redis.call('EXISTS', k.s) == 0 then return {} end
local ids = redis.call('ZRANGEBYSCORE', k.dl, '-inf', now_ms() - 1, 'LIMIT', 0, tonumber(ARGV[1]))
local n, settle = 0, {}
for i = 1, #ids do
  local h = redis.call('HGET', k.holds, ids[i])
  local state, uid, dl = parse(h or '')
  if state == 'HELD' then
    release(k, ids[i], uid, dl, 'EXPIRED', ARGV[2])
    n = n + 1
  elseif state == 'PAYING' then
    settle[#settle + 1] = ids[i]
    settle[#settle + 1] = uid
    redis.call('ZADD', k.dl, now_ms() + tonumber(ARGV[3]), ids[i])
  else
    redis.call('ZREM', k.dl, ids[i])
  end
end
local st = redis.call('HMGET', k.s, 'remaining', 'ver', 'paused', 'ends', 'held')
return {n, tonumber(st[1] or '0'), tonumber(st[2] or '0'), tonumber(st[3] or '0'), tonumber(st[4] or '0'),
  tonumber(st[5] or '0'), settle}
]==]

-- init: KEYS s, buyers, holds; ARGV initial, starts ms, ends ms, limit, force (0/1), the highest
-- entry sequence MySQL knows, then (order id, user id) of every order MySQL has PAID. The entry
-- counter (seq) never restarts below what Redis or MySQL has seen (an order id is never handed out
-- twice). Creates the product's state when absent (or, force, rebuilds it after Redis lost data):
-- remaining = initial - paid - holds still live in Redis (never below 0), buyers = paid per user +
-- live holds; ver restarts above any version handed out before (the clock in microseconds); paused
-- cleared. A pay may finish between the caller's read of MySQL and this script: a hold PAID here
-- that MySQL did not list is paid all the same, and a PAYING hold MySQL lists counts once, as held
-- (its pay_done, or the settle's, moves it to paid). A HELD hold MySQL lists (Redis lost its pay)
-- counts as both: its expiry gives back the held one. -> {remaining, ver, paused, created (0/1)}
_M.init = [==[
local s = KEYS[1]
local st = redis.call('HMGET', s, 'remaining', 'ver', 'paused', 'seq')
local seq = math.max(tonumber(st[4] or '0'), tonumber(ARGV[6]))
if ARGV[5] ~= '1' and st[1] then
  if seq > tonumber(st[4] or '0') then redis.call('HSET', s, 'seq', seq) end
  return {tonumber(st[1]), tonumber(st[2]), tonumber(st[3]), 0}
end
local paid_by = {}
for i = 7, #ARGV, 2 do paid_by[ARGV[i]] = ARGV[i + 1] end
local held, buyers = 0, {}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local state, uid = string.match(all[i + 1], '^(%u+)|(%d+)|')
  if state == 'HELD' or state == 'PAYING' then
    held = held + 1
    buyers[uid] = (buyers[uid] or 0) + 1
    if state == 'PAYING' then paid_by[all[i]] = nil end
  elseif state == 'PAID' and not paid_by[all[i]] then
    paid_by[all[i]] = uid
  end
end
local paid = 0
for _, uid in pairs(paid_by) do
  paid = paid + 1
  buyers[uid] = (buyers[uid] or 0) + 1
end
redis.call('DEL', KEYS[2])
for uid, n in pairs(buyers) do redis.call('HSET', KEYS[2], uid, n) end
local remaining = tonumber(ARGV[1]) - paid - held
if remaining < 0 then remaining = 0 end
local t = redis.call('TIME')
local ver = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', s, 'remaining', remaining, 'ver', string.format('%d', ver), 'paused', 0, 'starts', ARGV[2],
  'ends', ARGV[3], 'limit', ARGV[4], 'ended', 0, 'held', held, 'seq', string.format('%d', seq),
  'initial', ARGV[1], 'paid', paid)
return {remaining, ver, 0, 1}
]==]

-- restock: KEYS s; ARGV units (may be negative), product id. Units added to (or taken from) the sale
-- after the fact -- a paid order cancelled or returned, an admin stock change: initial and remaining
-- move together, so initial = remaining + held + paid still holds. A unit back is published like a
-- release. -> {remaining, ver, paused} | {} (no state: nothing to do, the next init reads MySQL)
_M.restock = [==[
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HINCRBY', KEYS[1], 'initial', ARGV[1])
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', ARGV[1])
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
if tonumber(ARGV[1]) > 0 then
  redis.call('PUBLISH', 'flash:stock', ARGV[2] .. '|' .. remaining .. '|' .. ver .. '|' .. paused)
end
return {remaining, ver, paused}
]==]

-- set_sale: KEYS s; ARGV starts ms, ends ms, limit: the sale window and per-user limit MySQL now has
-- (an admin changed them). -> {remaining, ver, paused} | {} (no state: the next init reads MySQL)
_M.set_sale = [==[
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], 'starts', ARGV[1], 'ends', ARGV[2], 'limit', ARGV[3])
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local st = redis.call('HMGET', KEYS[1], 'remaining', 'paused')
return {tonumber(st[1]), ver, tonumber(st[2])}
]==]

-- set_flag: KEYS s; ARGV field ('paused' | 'ended'), value (0/1). -> {remaining, ver, paused} | {} (no state)
_M.set_flag = [==[
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local st = redis.call('HMGET', KEYS[1], 'remaining', 'paused')
return {tonumber(st[1]), ver, tonumber(st[2])}
]==]

return _M
