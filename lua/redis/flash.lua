-- redis/flash.lua: the server-side scripts of the flash purchase (sources; flash.lua loads them with
-- host.redis.script). Each runs atomically in Redis, so every decision below is made on one state.
--
-- Keys of product P, all under the hash tag {p:P} (one slot: the scripts run on Redis Cluster):
--   {p:P}:s   hash, the product's whole state:
--               cap, seq   remaining = cap - seq; seq counts the entries so far (order id = P * 10^9 +
--                          seq; written zero-padded to 9 digits, the order id's tail) and a unit
--                          coming back (or added) raises cap, so an entry writes seq alone
--               ver        the version handed to the stock gate is ver + seq: an entry moves it
--                          through seq, every other change of remaining or paused bumps ver
--               out        holds ended (paid or released) plus the seq origin: held (HELD + PAYING)
--                          = seq - out
--               paid, initial, paused (0/1), ended (0/1), starts, ends (ms since the epoch), limit
--                          (per user), lost (the run id of the Redis restart last dealt with: recover)
--               u<uid>     units the member holds, is paying or paid (the per-user limit)
--               <order id> the hold: "STATE|uid|deadline_ms|mysql_order_id"
--             One hash, so an entry reads everything it decides on with one HMGET and writes its
--             counter, the member's count and the hold with one HSET.
--   {p:P}:dl  zset  order id -> when the sweeper looks at it (ms): a HELD hold's deadline, a PAYING
--                   hold's settle time (pay_begin + settle ms; the sweeper hands it to the settle)
--   {p:P}:ev  stream of order events, one field each: the event (HELD, EXPIRED, CANCELLED, FAILED,
--             PAID) -> "order id|user id"; the product is the key's, the time the entry id's (ms,
--             Redis clock)
--   {p:P}:ik:<uid>:<key>, {p:P}:pk:<uid>:<key>  Idempotency-Key records of entry and pay (only when the
--             request carried the header)
-- Every change of remaining or of paused moves the version and returns it with remaining, so the
-- caller can update the stock gate (host.stock) with a version that orders the updates. Times are the
-- Redis clock: read with TIME by every script but the entry, which is handed it by the host
-- (flash.lua redis_now: the host's clock plus its offset to the Redis clock, taken at its lower
-- bound), so the entry window, a hold's deadline, the pay and the sweeper all read one clock.
-- A unit coming back is published on the channel "flash:stock" as "P|remaining|ver|paused".
-- (An older layout -- remaining, held in {p:P}:s, holds and buyers in keys of their own -- is not
-- read: such a product counts as having no state, and init rebuilds it from MySQL.)
local _M = {}

-- stock_of(s) -> remaining, version, paused of the product's hash s (numbers; the hash exists).
local STATE = [==[
local function stock_of(s)
  local st = redis.call('HMGET', s, 'cap', 'seq', 'ver', 'paused')
  local seq = tonumber(st[2])
  return tonumber(st[1]) - seq, tonumber(st[3]) + seq, tonumber(st[4])
end
]==]
local NOW = [==[
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
]==]
-- Shared by the scripts that return a unit: release(s, dl, ev, order id, uid, deadline, the new state,
-- product id) -> remaining, version, paused (0/1).
local RELEASE = STATE .. NOW .. [==[
local function release(s, dlk, ev, oid, uid, dl, st, pid)
  redis.call('HSET', s, oid, st .. '|' .. uid .. '|' .. dl .. '|')
  redis.call('ZREM', dlk, oid)
  redis.call('HINCRBY', s, 'cap', 1)
  redis.call('HINCRBY', s, 'out', 1)
  redis.call('HINCRBY', s, 'ver', 1)
  if redis.call('HINCRBY', s, 'u' .. uid, -1) <= 0 then redis.call('HDEL', s, 'u' .. uid) end
  redis.call('XADD', ev, '*', st, oid .. '|' .. uid)
  local remaining, ver, paused = stock_of(s)
  -- %d: Redis Lua numbers are doubles, and `..` would write a version past 14 digits as 1.7e+15
  redis.call('PUBLISH', 'flash:stock', string.format('%d|%d|%d|%d', pid, remaining, ver, paused))
  return remaining, ver, paused
end
local function parse(h)
  return string.match(h, '^(%u+)|(%d+)|(%d+)|(%d*)$')
end
]==]

-- entry: KEYS s, dl, ev [, idem]; ARGV uid, now ms, deadline ms (now + hold), product id [, idem hash,
-- idem ttl ms] (the idempotency pair only when the request carried a key)
-- -> {seq, remaining, version} (integers: a new hold; its order id is product id * 10^9 + seq, its
--       deadline the one handed in, and the sale is not paused)
--    | {'DONE', order id, deadline ms, remaining, version, paused} (the replay of a keyed entry)
--    | {'ERR', code, starts ms, remaining, version, paused}
--    | {'NOINIT'}   (numbers as integers or their decimal strings: the caller converts)
-- Every check comes before the first write: the window, the flags, the stock and the member's count
-- from one HMGET. This script is what Redis runs per entry, so it is kept to the fewest commands (4:
-- one read, three writes, each of which Redis also formats into the AOF) and the least work in
-- Redis's one thread: the host hands it the time and the deadline as text (no TIME, no number
-- formatting here but the order id's tail), a new hold's answer is three integers (nothing the
-- caller knows comes back), values read only to be handed back stay strings, no number is parsed
-- that the decision does not need (a member with no unit yet is under any limit: limits are >= 1)
-- and none twice (`s + 0`, not tonumber(s), which parses its argument twice in Redis's Lua), and the
-- writes are the order counter, the member's count and the hold (one HSET), the deadline and the
-- event.
_M.entry = [==[
local uid = ARGV[1]
local ukey = 'u' .. uid
local st = redis.call('HMGET', KEYS[1], 'cap', 'seq', 'ver', 'paused', 'starts', 'ends', 'limit', 'ended', ukey)
if not st[1] then return {'NOINIT'} end
local seq = st[2] + 0
local remaining, ver, paused = st[1] - seq, st[3] + seq, st[4]
if KEYS[4] then
  local rec = redis.call('GET', KEYS[4])
  if rec then
    local h, oid, dl = string.match(rec, '^(%x+)|(%d+)|(%d+)$')
    if h ~= ARGV[5] then return {'ERR', 'IDEMPOTENCY_KEY_REUSED', 0, remaining, ver, paused} end
    return {'DONE', oid, dl, remaining, ver, paused}
  end
end
local now = ARGV[2] + 0
if now < st[5] + 0 then return {'ERR', 'SALE_NOT_OPEN', st[5], remaining, ver, paused} end
if now >= st[6] + 0 or st[8] == '1' then return {'ERR', 'SALE_CLOSED', 0, remaining, ver, paused} end
if paused == '1' then return {'ERR', 'SALE_PAUSED', 0, remaining, ver, paused} end
if remaining <= 0 then return {'ERR', 'OUT_OF_STOCK', 0, remaining, ver, paused} end
local n = '1'
if st[9] then
  n = st[9] + 1
  if n > st[7] + 0 then return {'ERR', 'ALREADY_PURCHASED', 0, remaining, ver, paused} end
end
local dl = ARGV[3]
seq = seq + 1
local tail = string.format('%09d', seq)
local oid = ARGV[4] .. tail
redis.call('HSET', KEYS[1], 'seq', tail, ukey, n, oid, 'HELD|' .. uid .. '|' .. dl .. '|')
redis.call('ZADD', KEYS[2], dl, oid)
redis.call('XADD', KEYS[3], '*', 'HELD', oid .. '|' .. uid)
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[5] .. '|' .. oid .. '|' .. dl, 'PX', ARGV[6]) end
return {seq, remaining - 1, ver + 1}
]==]

-- pay_begin: KEYS s, dl, ev, idem; ARGV order id, uid, idem hash, product id, settle ms
-- HELD and before its deadline -> PAYING: it cannot expire any more; its index entry now says when the
-- sweeper hands it to the settle (flash.lua), should the pay never finish (a worker killed mid-pay).
-- -> {'OK'} | {'DONE', status, mysql order id} (idempotent replay) | {'ERR', code, remaining, ver, paused}
--    (an overdue HELD hold is expired right here, so the refusal and the unit's return are one step)
_M.pay_begin = RELEASE .. [==[
local h = redis.call('HGET', KEYS[1], ARGV[1])
if not h then return {'ERR', 'ORDER_NOT_FOUND'} end
local state, uid, dl, moid = parse(h)
if uid ~= ARGV[2] then return {'ERR', 'ORDER_NOT_FOUND'} end
if ARGV[3] ~= '' then
  local rec = redis.call('GET', KEYS[4])
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
  local remaining, ver, paused = release(KEYS[1], KEYS[2], KEYS[3], ARGV[1], uid, dl, 'EXPIRED', ARGV[4])
  return {'ERR', 'RESERVATION_EXPIRED', remaining, ver, paused}
end
redis.call('HSET', KEYS[1], ARGV[1], 'PAYING|' .. uid .. '|' .. dl .. '|')
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[5]), ARGV[1])
return {'OK'}
]==]

-- pay_failed: KEYS s, dl, ev, idem; ARGV order id, uid, idem hash, idem ttl ms, product id
-- PAYING -> FAILED, the unit back. -> {remaining, ver, paused} | {} (not PAYING: nothing done)
_M.pay_failed = RELEASE .. [==[
local h = redis.call('HGET', KEYS[1], ARGV[1])
if not h then return {} end
local state, uid, dl = parse(h)
if state ~= 'PAYING' or uid ~= ARGV[2] then return {} end
local remaining, ver, paused = release(KEYS[1], KEYS[2], KEYS[3], ARGV[1], uid, dl, 'FAILED', ARGV[5])
if ARGV[3] ~= '' then redis.call('SET', KEYS[4], ARGV[3] .. '|402|', 'PX', ARGV[4]) end
return {remaining, ver, paused}
]==]

-- pay_done: KEYS s, dl, ev, idem; ARGV order id, uid, mysql order id, idem hash, idem ttl ms.
-- PAYING -> PAID (the order is in MySQL already). -> 1 | 0 (was not PAYING)
_M.pay_done = RELEASE .. [==[
local h = redis.call('HGET', KEYS[1], ARGV[1])
if not h then return 0 end
local state, uid, dl = parse(h)
if state ~= 'PAYING' or uid ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'PAID|' .. uid .. '|' .. dl .. '|' .. ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'out', 1)
redis.call('HINCRBY', KEYS[1], 'paid', 1)
redis.call('XADD', KEYS[3], '*', 'PAID', ARGV[1] .. '|' .. uid)
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4] .. '|200|' .. ARGV[3], 'PX', ARGV[5]) end
return 1
]==]

-- cancel: KEYS s, dl, ev; ARGV order id, uid, product id
-- HELD -> CANCELLED, the unit back. -> {'OK', remaining, ver, paused} | {'GONE'} (already released)
--    | {'ERR', code}
_M.cancel = RELEASE .. [==[
local h = redis.call('HGET', KEYS[1], ARGV[1])
if not h then return {'ERR', 'ORDER_NOT_FOUND'} end
local state, uid, dl = parse(h)
if uid ~= ARGV[2] then return {'ERR', 'ORDER_NOT_FOUND'} end
if state == 'PAID' then return {'ERR', 'ALREADY_PAID'} end
if state == 'PAYING' then return {'ERR', 'NOT_PAYMENT_PENDING'} end
if state ~= 'HELD' then return {'GONE'} end
local remaining, ver, paused = release(KEYS[1], KEYS[2], KEYS[3], ARGV[1], uid, dl, 'CANCELLED', ARGV[3])
return {'OK', remaining, ver, paused}
]==]

-- sweep: KEYS s, dl, ev; ARGV max holds, product id, settle ms
-- Every HELD hold past its deadline -> EXPIRED, its unit back; each exactly once (the state is
-- checked here, under the script's atomicity). A PAYING hold past its settle time is returned for the
-- settle and its time pushed settle ms on (MySQL decides its fate, once: flash.lua settle).
-- -> {expired, remaining, ver, paused, ends ms, held, {order id, uid, ...} to settle} | {} (no state)
_M.sweep = RELEASE .. [==[
local s, dlk = KEYS[1], KEYS[2]
if redis.call('HEXISTS', s, 'cap') == 0 then return {} end
local ids = redis.call('ZRANGEBYSCORE', dlk, '-inf', now_ms() - 1, 'LIMIT', 0, tonumber(ARGV[1]))
local n, settle = 0, {}
for i = 1, #ids do
  local h = redis.call('HGET', s, ids[i])
  local state, uid, dl = parse(h or '')
  if state == 'HELD' then
    release(s, dlk, KEYS[3], ids[i], uid, dl, 'EXPIRED', ARGV[2])
    n = n + 1
  elseif state == 'PAYING' then
    settle[#settle + 1] = ids[i]
    settle[#settle + 1] = uid
    redis.call('ZADD', dlk, now_ms() + tonumber(ARGV[3]), ids[i])
  else
    redis.call('ZREM', dlk, ids[i])
  end
end
local remaining, ver, paused = stock_of(s)
local st = redis.call('HMGET', s, 'ends', 'seq', 'out')
return {n, remaining, ver, paused, tonumber(st[1]), tonumber(st[2]) - tonumber(st[3]), settle}
]==]

-- init: KEYS s; ARGV initial, starts ms, ends ms, limit, force (0/1), the highest entry sequence MySQL
-- knows, then (order id, user id) of every order MySQL has PAID. The entry counter (seq) never
-- restarts below what Redis or MySQL has seen (an order id is never handed out twice). Creates the
-- product's state when absent (or, force, rebuilds it after Redis lost data): remaining = initial -
-- paid - holds still live in Redis (never below 0), the members' counts = paid per user + live holds;
-- ver restarts above any version handed out before (the clock in microseconds, plus seq); paused
-- cleared. A pay may finish between the caller's read of MySQL and this script: a hold PAID here
-- that MySQL did not list is paid all the same, and a PAYING hold MySQL lists counts once, as held
-- (its pay_done, or the settle's, moves it to paid). A HELD hold MySQL lists (Redis lost its pay)
-- counts as both: its expiry gives back the held one. The hold records stay (a pay, a cancel, the
-- sweeper still find them). -> {remaining, version, paused, created (0/1)}
_M.init = STATE .. [==[
local s = KEYS[1]
local st = redis.call('HMGET', s, 'cap', 'seq')
local seq = math.max(tonumber(st[2] or '0'), tonumber(ARGV[6]))
if ARGV[5] ~= '1' and st[1] then
  if seq > tonumber(st[2]) then redis.call('HSET', s, 'seq', string.format('%09d', seq)) end
  local remaining, ver, paused = stock_of(s)
  return {remaining, ver, paused, 0}
end
local paid_by = {}
for i = 7, #ARGV, 2 do paid_by[ARGV[i]] = ARGV[i + 1] end
local held, buyers, counts = 0, {}, {}
local all = redis.call('HGETALL', s)
for i = 1, #all, 2 do
  local f = all[i]
  if string.byte(f) == 117 then -- 'u': a member's count, recounted below
    counts[#counts + 1] = f
  else
    local state, uid = string.match(all[i + 1], '^(%u+)|(%d+)|')
    if state == 'HELD' or state == 'PAYING' then
      held = held + 1
      buyers[uid] = (buyers[uid] or 0) + 1
      if state == 'PAYING' then paid_by[f] = nil end
    elseif state == 'PAID' and not paid_by[f] then
      paid_by[f] = uid
    end
  end
end
local paid = 0
for _, uid in pairs(paid_by) do
  paid = paid + 1
  buyers[uid] = (buyers[uid] or 0) + 1
end
for i = 1, #counts, 1000 do redis.call('HDEL', s, unpack(counts, i, math.min(i + 999, #counts))) end
for uid, n in pairs(buyers) do redis.call('HSET', s, 'u' .. uid, n) end
local remaining = tonumber(ARGV[1]) - paid - held
if remaining < 0 then remaining = 0 end
local t = redis.call('TIME')
local ver = tonumber(t[1]) * 1000000 + tonumber(t[2])
local fmt = string.format
redis.call('HSET', s, 'cap', fmt('%d', seq + remaining), 'seq', fmt('%09d', seq), 'ver', fmt('%d', ver),
  'out', fmt('%d', seq - held), 'paused', 0, 'starts', ARGV[2], 'ends', ARGV[3], 'limit', ARGV[4], 'ended', 0,
  'initial', ARGV[1], 'paid', paid)
return {remaining, ver + seq, 0, 1}
]==]

-- restock: KEYS s; ARGV units (may be negative), product id. Units added to (or taken from) the sale
-- after the fact -- a paid order cancelled or returned, an admin stock change: initial and remaining
-- move together, so initial = remaining + held + paid still holds. A unit back is published like a
-- release. -> {remaining, ver, paused} | {} (no state: nothing to do, the next init reads MySQL)
_M.restock = STATE .. [==[
if redis.call('HEXISTS', KEYS[1], 'cap') == 0 then return {} end
redis.call('HINCRBY', KEYS[1], 'initial', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'cap', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
local remaining, ver, paused = stock_of(KEYS[1])
if tonumber(ARGV[1]) > 0 then
  redis.call('PUBLISH', 'flash:stock', string.format('%d|%d|%d|%d', ARGV[2], remaining, ver, paused))
end
return {remaining, ver, paused}
]==]

-- set_sale: KEYS s; ARGV starts ms, ends ms, limit: the sale window and per-user limit MySQL now has
-- (an admin changed them). -> {remaining, ver, paused} | {} (no state: the next init reads MySQL)
_M.set_sale = STATE .. [==[
if redis.call('HEXISTS', KEYS[1], 'cap') == 0 then return {} end
redis.call('HSET', KEYS[1], 'starts', ARGV[1], 'ends', ARGV[2], 'limit', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {stock_of(KEYS[1])}
]==]

-- pause_lost: KEYS s; ARGV the run id of a Redis that may have lost writes. Pauses the sale, once per
-- run id: `lost` keeps the id of the last pause (or of the recover that created the state again
-- after Redis lost it whole), which the rebuild (init) leaves, so a node noticing the same restart
-- later, or retrying its recover, does not pause again a sale another already rebuilt.
-- -> {remaining, ver, paused} (paused 1: this loss's rebuild is still owed) | {} (no state)
_M.pause_lost = STATE .. [==[
if redis.call('HEXISTS', KEYS[1], 'cap') == 0 then return {} end
if redis.call('HGET', KEYS[1], 'lost') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'paused', 1, 'lost', ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
end
return {stock_of(KEYS[1])}
]==]

-- set_flag: KEYS s; ARGV field ('ended'), value (0/1). -> {remaining, ver, paused} | {} (no state)
_M.set_flag = STATE .. [==[
if redis.call('HEXISTS', KEYS[1], 'cap') == 0 then return {} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return {stock_of(KEYS[1])}
]==]

return _M
