-- Black-box specs of the Redis data plane (host.redis): the real binary ($FCFS_BIN, default
-- build/fcfs) with a temporary config and test app, talking to a private redis-server the spec
-- starts itself (spec/support/redis_ctl.lua), so that it can count the connections fcfs opens and
-- kill and restart the server. Covered: 1,000 concurrent requests over workers x
-- redis_connections shared connections, transactions on pinned connections (MULTI/EXEC, WATCH
-- conflicts), content-addressed scripts surviving SCRIPT FLUSH (run and run_values, in pipelines, on pinned
-- connections, across a failed reload), numbers sent exactly, pipelines, reply types and server errors,
-- Redis killed and restarted under load (503 fast, recovery, /readyz, /metrics), host I/O refused
-- at module load, host I/O inside user coroutines. Every block ends by checking the error log for
-- [error] lines it did not provoke itself.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/redis_spec.lua
-- (/readyz also checks MySQL: run it with the FCFS_TEST_MYSQL_* variables `etc/dev test` exports.)
local socket = require "socket"
local cjson = require "cjson.safe"
local server = require "spec.support.server"
local http = require "spec.support.http"
local ctl = require "spec.support.redis_ctl"

local format = string.format
local null = cjson.null

local WORKERS, CONNECTIONS = 2, 2

-- The repository's app.lua (/readyz, /metrics, /_host/reload) is the module redisspec_base of the
-- test app, which adds the routes below.
local BASE_APP = server.repo_file("lua/app.lua")

local SCRIPT_INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"

local APP = [==[
local app = require "redisspec_base"
local web = require "lib.web"
local host = require "host"
local redis = host.redis
local check = web.check
local tonumber, tostring, pcall, type = tonumber, tostring, pcall, type
local co_wrap, co_create, co_resume, co_yield = coroutine.wrap, coroutine.create, coroutine.resume,
    coroutine.yield

-- scripts are created at module load time: no I/O until they run
local scripts = {
    incr_by = redis.script(]==] .. format("%q", SCRIPT_INCR) .. [==[),
    nested = redis.script("return {1, {'two', {3}}, 'four'}"),
    broken = redis.script("return +"),
}

local function opt(v) if v == nil then return host.null end return v end

-- 1: SET, optionally hold, GET back, count
app:get("/load", function(req)
    local i = req:arg("i")
    local key = "load:" .. i
    check(redis.call("SET", key, "v" .. i))
    local hold = tonumber(req:arg("hold"))
    if hold then host.sleep(hold) end
    -- barrier=N: stay in flight until N requests have come this far (at most 10 s); the count
    -- seen proves how many were in flight at once
    local barrier, seen = tonumber(req:arg("barrier")), nil
    if barrier then
        seen = check(redis.call("INCR", "load:inflight"))
        local deadline = host.now() + 10
        while seen < barrier and host.now() < deadline do
            host.sleep(0.05)
            seen = tonumber(check(redis.call("GET", "load:inflight")))
        end
    end
    local v = check(redis.call("GET", key))
    check(redis.call("INCR", "load:count"))
    return { json = { i = i, v = v, seen = seen } }
end)

-- 1b: a barrier: count in at Redis, then wait (polling) until `n` requests have come in; the
-- value each saw proves how many were in flight together
app:get("/barrier", function(req)
    local n, key = tonumber(req:arg("n")), req:arg("key")
    local seen = check(redis.call("INCR", key))
    local t0 = host.now()
    while seen < n and host.now() - t0 < 15 do
        host.sleep(0.05)
        seen = tonumber(check(redis.call("GET", key)))
    end
    return { json = { seen = seen } }
end)

-- 6: the route the fault spec loads
app:get("/kv", function(req)
    local k = "kv:" .. req:arg("k")
    check(redis.call("SET", k, req:arg("k")))
    return { json = { v = check(redis.call("GET", k)) } }
end)

-- 2: a transaction on a pinned connection, one command at a time and as a pipeline
app:get("/tx", function(req)
    local key = req:arg("key")
    local p = check(redis.pin())
    local r = {}
    r.multi = check(p:call("MULTI"))
    r.q1 = check(p:call("SET", key, "a"))
    r.q2 = check(p:call("INCR", key .. ":n"))
    r.q3 = check(p:call("LPUSH", key, "x")) -- fails inside EXEC: WRONGTYPE
    r.exec = check(p:call("EXEC"))
    r.piped = check(p:pipeline({ { "MULTI" }, { "INCR", key .. ":n" }, { "INCR", key .. ":n" }, { "EXEC" } }))
    p:release()
    return { json = r }
end)

app:get("/multi-shared", function()
    redis.call("MULTI") -- raises: MULTI needs a pinned connection
    return { json = { reached = true } }
end)

-- the same refusal for other commands and entry points, caught
app:get("/needs-pin", function()
    local r = {}
    local ok, err = pcall(redis.call, "WATCH", "k")
    r.watch = { ok, tostring(err) }
    ok, err = pcall(redis.call, "blpop", "k", 0)
    r.blpop = { ok, tostring(err) }
    ok, err = pcall(redis.pipeline, { { "GET", "k" }, { "EXEC" } })
    r.pipeline = { ok, tostring(err) }
    ok, err = pcall(redis.pipeline, { { scripts.incr_by, "k" } })
    r.run = { ok, tostring(err) }
    return { json = r }
end)

-- WATCH key; with race=1 wait until someone else changes key; then try a transaction
app:get("/watch", function(req)
    local key = req:arg("key")
    local p = check(redis.pin())
    check(p:call("WATCH", key))
    local before = check(redis.call("GET", key))
    local waited = 0
    if req:arg("race") then
        check(redis.call("SET", key .. ":watching", "1"))
        for _ = 1, 300 do
            if check(redis.call("GET", key)) ~= before then break end
            host.sleep(0.01)
            waited = waited + 1
        end
    end
    check(p:call("MULTI"))
    check(p:call("SET", key, "from-tx"))
    local exec = check(p:call("EXEC"))
    p:release()
    return { json = { exec = exec, after = check(redis.call("GET", key)), waited = waited } }
end)

-- 3: scripts
local function pack(...) return { n = select("#", ...), ... } end

-- values=1: script:run_values, its values counted and the first three returned
app:get("/run", function(req)
    local script, keys, args = scripts[req:arg("name")], { req:arg("key") or "k" }, { req:arg("by") or "1" }
    if req:arg("values") then
        local vs = pack(script:run_values(keys, args))
        return { json = { n = vs.n, vs = { opt(vs[1]), opt(vs[2]), opt(vs[3]) } } }
    end
    local v, err = script:run(keys, args)
    return { json = { v = opt(v), err = opt(err) } }
end)

app:get("/script-more", function(req)
    local key = req:arg("key")
    local o = { sha = scripts.incr_by.sha }
    o.piped = check(redis.pipeline({ { "SET", key, "1" }, { scripts.incr_by, { key }, { 2 } },
        { scripts.nested }, { "GET", key } }))
    local p = check(redis.pin())
    o.pinned = check(p:run(scripts.incr_by, { key }, { 10 }))
    o.pinned_piped = check(p:pipeline({ { "MULTI" }, { scripts.incr_by, { key }, { 100 } }, { "EXEC" } }))
    p:release()
    return { json = o }
end)

-- numbers as command arguments: exact integers, shortest exact floats
app:get("/numbers", function(req)
    local key = req:arg("key")
    local o = {}
    for name, n in pairs({ p53 = 2 ^ 53, n15 = 123456789012345, neg = -9007199254740991,
        tenth = 0.1, half = 1.5, big = 1e15 + 1, zero = 0, negzero = -0.0, nine = 9, ten = 10,
        minus_one = -1 }) do
        check(redis.call("SET", key .. ":" .. name, n))
        o[name] = check(redis.call("GET", key .. ":" .. name))
    end
    o.incr = check(redis.call("INCRBY", key .. ":ctr", 2 ^ 40))
    o.run = check(scripts.incr_by:run({ key .. ":ctr2" }, { 2 ^ 50 }))
    return { json = o }
end)

-- 4: pipelines
app:get("/pipeline", function(req)
    local key = req:arg("key")
    local res = check(redis.pipeline({
        { "DEL", key },
        { "SET", key, "10" },
        { "INCRBY", key, 5 },
        { "LPUSH", key, "x" },
        { "GET", key },
        { "GET", key .. ":missing" },
        { "NOSUCHCMD", key },
        { "MGET", key, key .. ":missing" },
    }))
    local cmds = {}
    for i = 1, 200 do cmds[i] = { "INCR", key .. ":seq" } end
    local seq = check(redis.pipeline(cmds))
    local in_order = #seq == 200
    for i = 1, 200 do
        if seq[i] ~= i then in_order = false end
    end
    return { json = { res = res, n = #res, seq_in_order = in_order } }
end)

-- 5: reply types and server errors the handler reports itself
app:get("/types", function(req)
    local k = req:arg("key")
    local o = {}
    o.status = check(redis.call("SET", k, "hello"))
    o.ping = check(redis.call("PING"))
    o.integer = check(redis.call("INCR", k .. ":n"))
    o.number_arg = check(redis.call("INCRBY", k .. ":n", 41))
    o.float = check(redis.call("INCRBYFLOAT", k .. ":f", 1.5))
    o.bulk = check(redis.call("GET", k))
    o.missing = check(redis.call("GET", k .. ":none"))
    check(redis.call("SET", k .. ":e", ""))
    o.empty = check(redis.call("GET", k .. ":e"))
    o.mget = check(redis.call("MGET", k, k .. ":none", k .. ":e"))
    check(redis.call("XADD", k .. ":s", "1-1", "f", "v", "g", "w"))
    check(redis.call("XADD", k .. ":s", "2-1", "h", "x"))
    o.nested = check(redis.call("XRANGE", k .. ":s", "-", "+"))
    local empty = check(redis.call("LRANGE", k .. ":nolist", 0, -1))
    o.empty_array = { type = type(empty), len = #empty, is_null = empty == host.null }
    local bin = "a\0b\r\nc\255"
    check(redis.call("SET", k .. ":bin", bin))
    local got = check(redis.call("GET", k .. ":bin"))
    o.binary_roundtrip = got == bin and #got == #bin
    -- commands are formatted by hand into the connection's buffer: a 90 KB binary value (past
    -- the 32 KB early flush) and 102 arguments (numbers among them) arrive byte for byte
    local big = string.rep("x\0\r\n$3\r\n", 10000)
    check(redis.call("SET", k .. ":big", big))
    o.big_roundtrip = check(redis.call("GET", k .. ":big")) == big
    local args = { "RPUSH", k .. ":many" }
    for i = 1, 100 do args[#args + 1] = i % 2 == 0 and i or ("s" .. i) end
    o.many = check(redis.call(unpack(args)))
    o.many_ends = check(redis.call("LRANGE", k .. ":many", 0, 0))[1] .. ","
        .. check(redis.call("LINDEX", k .. ":many", -1))
    local v, err = redis.call("LPUSH", k, "x")
    o.wrongtype = { v == nil, err }
    v, err = redis.call("NOSUCHCMD", k)
    o.unknown = { v == nil, err }
    v, err = redis.call("INCR", k)
    o.not_integer = { v == nil, err }
    o.script_nested = check(scripts.nested:run())
    if req:arg("conflict") then
        return { status = 409, json = { error = err } }
    end
    return { json = o }
end)

-- 5b: host.redis.call with 0 to 8 arguments (a Lua function passes up to 6 on with a fixed count):
-- the values (how many, too) and the argument errors are l_call's own
app:get("/arity", function(req)
    local k = req:arg("key")
    local function n_of(...) return select("#", ...) end
    local function err_of(...)
        local ok, e = pcall(redis.call, ...)
        return ok and "no error" or e
    end
    return { json = {
        one = { n_of(redis.call("PING")), check(redis.call("PING")) },
        two = { n_of(redis.call("GET", k)), check(redis.call("GET", k)) == host.null },
        three = check(redis.call("SET", k, "a")),
        four = check(redis.call("SET", k, "b", "GET")),
        five = check(redis.call("SET", k, "c", "EX", 100)),
        six = check(redis.call("RPUSH", k .. ":l", "1", "2", "3", 4)),
        seven = check(redis.call("RPUSH", k .. ":l", "5", "6", "7", "8", 9)),
        eight = check(redis.call("RPUSH", k .. ":l", "10", "11", "12", "13", "14", 15)),
        list = check(redis.call("LRANGE", k .. ":l", 0, -1)),
        failed = { n_of(redis.call("NOSUCHCMD", k)), select(2, redis.call("NOSUCHCMD", k)) },
        none = err_of(),
        trailing_nil = err_of("GET", k, nil),
        nil_in_seven = err_of("RPUSH", k, "1", "2", "3", "4", nil),
        table_arg = err_of("GET", {}),
        -- called from Lua code: the position is that code's (this line's)
        positioned = select(2, pcall(function() local v = redis.call("GET", k, nil) return v end)),
    } }
end)

-- a server error passed to web.check: a plain error, 500
app:get("/strict", function(req)
    local k = req:arg("key")
    check(redis.call("SET", k, "s"))
    check(redis.call("LPUSH", k, "x"))
    return { json = { reached = true } }
end)

-- 8: host I/O inside user coroutines
app:get("/co", function(req)
    local k = req:arg("key")
    local f = co_wrap(function()
        local a = check(redis.call("INCR", k))
        co_yield(a)
        local p = check(redis.pin())
        local t = check(p:pipeline({ { "MULTI" }, { "INCR", k }, { "EXEC" } }))
        p:release()
        return t[3][1]
    end)
    local a = f()
    local b = f()
    local co = co_create(function(x)
        local got = check(redis.call("GET", k))
        local y = co_yield(got .. x)
        return check(redis.pipeline({ { "INCRBY", k, y }, { "GET", k } }))
    end)
    local ok1, v1 = co_resume(co, "!")
    local ok2, v2 = co_resume(co, 10)
    return { json = { a = a, b = b, ok1 = ok1, v1 = v1, ok2 = ok2, v2 = v2 } }
end)

return app
]==]

-- helpers ------------------------------------------------------------------------------------------

local function get(s, path)
    return assert(http.request{ port = s.port, path = path, timeout = 5 })
end

local function get_json(s, path, status)
    local res = get(s, path)
    assert.equal(status or 200, res.status, res.body)
    return http.json(res)
end

local function metric(text, sample)
    for line in text:gmatch("[^\n]+") do
        if line:sub(1, #sample + 1) == sample .. " " then
            return tonumber(line:sub(#sample + 2))
        end
    end
    return nil
end

local function pool_up(s)
    return metric(s:metrics(), 'fcfs_pool_up{backend="redis"}')
end

local function sha1(s)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
    local p = assert(io.popen("sha1sum " .. path))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    return assert(out:match("^(%x+)"))
end

-- fcfs's clients of a private redis: fcfs speaks TCP (127.0.0.1:*), the spec the unix socket.
local function fcfs_clients(r, addr_prefix)
    local n = 0
    for _, c in ipairs(r:clients()) do
        if c.addr and c.addr:sub(1, #addr_prefix) == addr_prefix then
            n = n + 1
        end
    end
    return n
end

local function mysql_configured()
    return (os.getenv("FCFS_TEST_MYSQL_SOCKET") or os.getenv("FCFS_TEST_MYSQL_HOST") or "") ~= ""
end

local function start_fcfs(redis_addr, conf)
    local c = { workers = WORKERS, redis = redis_addr, redis_connections = CONNECTIONS, drain_timeout = 1 }
    for k, v in pairs(conf or {}) do
        c[k] = v
    end
    return server.start{ app = APP, lua_files = { ["redisspec_base.lua"] = BASE_APP }, conf = c }
end

-- The data plane against a live server -------------------------------------------------------------

describe("host.redis", function()
    local r, s, baseline

    setup(function()
        r = ctl.start()
        baseline = r:info("total_connections_received") -- counts the spec's own connection
        s = start_fcfs(r.tcp)
    end)

    teardown(function()
        if s then
            s:stop()
        end
        if r then
            r:stop()
        end
    end)

    it("serves 1,000 requests in flight at once over at most workers x redis_connections connections", function()
        local paths = {}
        for i = 1, 1000 do
            paths[i] = "/load?barrier=1000&i=" .. i
        end
        local results, elapsed = ctl.fanout{ port = s.port, paths = paths, timeout = 20 }
        local bad = {}
        for i = 1, 1000 do
            local res = results[i]
            local body = res.status == 200 and cjson.decode(res.body)
            -- seen = 1000: the request was still in flight when the 1,000th arrived
            if not (body and body.i == tostring(i) and body.v == "v" .. i and body.seen == 1000) then
                bad[#bad + 1] = format("#%d: %s %s", i, tostring(res.status or res.err), tostring(res.body))
                if #bad > 5 then
                    break
                end
            end
        end
        assert.same({}, bad)
        assert.equal(1000, tonumber(r:call("GET", "load:count")))
        assert.equal(1000, tonumber(r:call("GET", "load:inflight")))
        assert.is_true(elapsed < 15, "took " .. elapsed .. " s")
        local n = fcfs_clients(r, "127.0.0.1:")
        assert.is_true(n >= 1 and n <= WORKERS * CONNECTIONS, n .. " fcfs connections")
        local opened = r:info("total_connections_received") - baseline
        assert.is_true(opened <= WORKERS * CONNECTIONS, opened .. " connections opened")
    end)

    it("has 1,000 requests in flight at once (a Redis counter all of them wait on)", function()
        r:call("DEL", "barrier")
        local paths = {}
        for i = 1, 1000 do
            paths[i] = "/barrier?n=1000&key=barrier"
        end
        local results = ctl.fanout{ port = s.port, paths = paths, timeout = 30 }
        -- a request answers only once the counter reached 1000 (or after 15 s): when the
        -- 1000th came in, no request had finished, so all 1000 were in flight together
        local full, other = 0, {}
        for i = 1, 1000 do
            local b = results[i].status == 200 and cjson.decode(results[i].body)
            if b and b.seen >= 1000 then
                full = full + 1
            elseif #other < 5 then
                other[#other + 1] = tostring(results[i].status or results[i].err) .. " " .. tostring(results[i].body)
            end
        end
        assert.same({}, other)
        assert.equal(1000, full)
        assert.equal("1000", r:call("GET", "barrier"))
        local opened = r:info("total_connections_received") - baseline
        assert.is_true(opened <= WORKERS * CONNECTIONS, opened .. " connections opened")
    end)

    it("keeps to its shared connections while requests are in flight", function()
        -- requests that hold 1 s between SET and GET; CLIENT LIST is sampled while they wait
        local load = ctl.load{ port = s.port, concurrency = 200, timeout = 5,
            path = function(i) return "/load?hold=1&i=" .. (2000 + i) end }
        load:pump(0.4)
        local during = fcfs_clients(r, "127.0.0.1:")
        load:stop(5)
        assert.is_true(#load.done >= 200, #load.done .. " requests done")
        for _, q in ipairs(load.done) do
            assert.equal(200, q.status, tostring(q.err) .. " " .. tostring(q.body))
        end
        assert.is_true(during >= 1 and during <= WORKERS * CONNECTIONS, during .. " fcfs connections")
        local opened = r:info("total_connections_received") - baseline
        assert.is_true(opened <= WORKERS * CONNECTIONS, opened .. " connections opened")
    end)

    it("runs MULTI/EXEC on a pinned connection", function()
        r:call("SET", "tx:n", "5")
        local b = get_json(s, "/tx?key=tx")
        assert.equal("OK", b.multi)
        assert.equal("QUEUED", b.q1)
        assert.equal("QUEUED", b.q2)
        assert.equal("QUEUED", b.q3)
        assert.equal(3, #b.exec)
        assert.equal("OK", b.exec[1])
        assert.equal(6, b.exec[2])
        assert.equal(false, b.exec[3][1])
        assert.matches("^WRONGTYPE", b.exec[3][2])
        assert.same({ "OK", "QUEUED", "QUEUED", { 7, 8 } }, b.piped)
        assert.equal("a", r:call("GET", "tx"))
        assert.equal("8", r:call("GET", "tx:n"))
    end)

    it("refuses MULTI on a shared connection with the documented error (500)", function()
        local res = get(s, "/multi-shared")
        assert.equal(500, res.status)
        assert.equal("INTERNAL", http.json(res).error.code)
        server.wait_until(function()
            return s:error_log():find("host.redis.call: MULTI needs a connection of its own: use host.redis.pin()",
                1, true)
        end, 2, "the error line of /multi-shared")

        local b = get_json(s, "/needs-pin")
        assert.equal(false, b.watch[1])
        assert.matches("host.redis.call: WATCH needs a connection of its own", b.watch[2], 1, true)
        assert.equal(false, b.blpop[1])
        assert.matches("host.redis.call: blpop needs a connection of its own", b.blpop[2], 1, true)
        assert.equal(false, b.pipeline[1])
        assert.matches("command #2 (EXEC) needs a connection of its own", b.pipeline[2], 1, true)
        assert.equal(false, b.run[1])
        assert.matches("host.redis.pipeline: keys must be a table", b.run[2], 1, true)
    end)

    it("detects a WATCH conflict: a concurrent write makes EXEC return null", function()
        -- no conflict: the transaction runs
        r:call("SET", "w1", "orig")
        local b = get_json(s, "/watch?key=w1")
        assert.same({ "OK" }, b.exec)
        assert.equal("from-tx", b.after)

        -- conflict: the spec writes the key between WATCH and EXEC
        r:call("SET", "w2", "orig")
        local c = assert(http.connect(s.port))
        assert(c:send_raw(http.format_request({ path = "/watch?key=w2&race=1" }, s.port)))
        server.wait_until(function() return r:call("GET", "w2:watching") == "1" end, 5, "the WATCH")
        r:call("SET", "w2", "from-spec")
        local res = assert(c:read_response())
        c:close()
        assert.equal(200, res.status, res.body)
        b = http.json(res)
        assert.equal(null, b.exec)
        assert.equal("from-spec", b.after)
        assert.is_true(b.waited < 300)
    end)

    it("runs scripts by SHA, also after SCRIPT FLUSH", function()
        local sha = sha1(SCRIPT_INCR)
        r:call("DEL", "sc")
        local b = get_json(s, "/run?name=incr_by&key=sc&by=5")
        assert.equal(5, b.v)
        assert.equal(null, b.err)
        assert.same({ 1 }, r:call("SCRIPT", "EXISTS", sha))

        assert.equal("OK", r:call("SCRIPT", "FLUSH"))
        assert.same({ 0 }, r:call("SCRIPT", "EXISTS", sha))
        -- concurrent runs on both workers, all on connections whose script cache is gone
        local paths = {}
        for i = 1, 20 do
            paths[i] = "/run?name=incr_by&key=sc&by=2"
        end
        local results = ctl.fanout{ port = s.port, paths = paths, timeout = 10 }
        local seen = {}
        for i = 1, 20 do
            assert.equal(200, results[i].status, tostring(results[i].err))
            local v = cjson.decode(results[i].body)
            assert.equal(null, v.err)
            seen[#seen + 1] = v.v
        end
        table.sort(seen)
        for i = 1, 20 do
            assert.equal(5 + 2 * i, seen[i])
        end
        assert.same({ 1 }, r:call("SCRIPT", "EXISTS", sha))
        assert.equal("45", r:call("GET", "sc"))

        b = get_json(s, "/run?name=nested")
        assert.same({ 1, { "two", { 3 } }, "four" }, b.v)
        b = get_json(s, "/run?name=broken")
        assert.equal(null, b.v)
        assert.matches("^ERR", b.err)

        -- run_values: an array's elements as the values, any other reply as run answers it
        b = get_json(s, "/run?name=nested&values=1")
        assert.same({ n = 3, vs = { 1, { "two", { 3 } }, "four" } }, b)
        b = get_json(s, "/run?name=incr_by&key=sc&by=1&values=1")
        assert.same({ n = 1, vs = { 46, null, null } }, b)
        b = get_json(s, "/run?name=broken&values=1")
        assert.equal(2, b.n)
        assert.equal(null, b.vs[1])
        assert.matches("^ERR", b.vs[2])
    end)

    it("runs a script handle inside pipelines and on a pinned connection, after SCRIPT FLUSH", function()
        assert.equal("OK", r:call("SCRIPT", "FLUSH"))
        local b = get_json(s, "/script-more?key=scm")
        assert.equal(sha1(SCRIPT_INCR), b.sha)
        assert.same({ "OK", 3, { 1, { "two", { 3 } }, "four" }, "3" }, b.piped)
        assert.equal(13, b.pinned)
        assert.same({ "OK", "QUEUED", { 113 } }, b.pinned_piped)
        assert.equal("113", r:call("GET", "scm"))
    end)

    it("sends numbers exactly (integers to 2^53 and beyond 14 digits, shortest floats)", function()
        local b = get_json(s, "/numbers?key=num")
        assert.same({
            p53 = "9007199254740992", n15 = "123456789012345", neg = "-9007199254740991",
            tenth = "0.1", half = "1.5", big = "1000000000000001",
            zero = "0", negzero = "0", nine = "9", ten = "10", minus_one = "-1",
            incr = 1099511627776, run = 1125899906842624,
        }, b)
    end)

    it("returns pipeline results in order, a failed slot as {false, err}", function()
        local b = get_json(s, "/pipeline?key=pl")
        assert.equal(8, b.n)
        local res = b.res
        assert.equal(0, res[1])
        assert.equal("OK", res[2])
        assert.equal(15, res[3])
        assert.equal(false, res[4][1])
        assert.matches("^WRONGTYPE", res[4][2])
        assert.equal("15", res[5])
        assert.equal(null, res[6])
        assert.equal(false, res[7][1])
        assert.matches("^ERR unknown command", res[7][2])
        assert.same({ "15", null }, res[8])
        assert.is_true(b.seq_in_order)
        assert.equal("200", r:call("GET", "pl:seq"))
    end)

    it("maps reply types and surfaces server errors", function()
        local b = get_json(s, "/types?key=ty")
        assert.equal("OK", b.status)
        assert.equal("PONG", b.ping)
        assert.equal(1, b.integer)
        assert.equal(42, b.number_arg)
        assert.equal("1.5", b.float)
        assert.equal("hello", b.bulk)
        assert.equal(null, b.missing)
        assert.equal("", b.empty)
        assert.same({ "hello", null, "" }, b.mget)
        assert.same({ { "1-1", { "f", "v", "g", "w" } }, { "2-1", { "h", "x" } } }, b.nested)
        assert.same({ type = "table", len = 0, is_null = false }, b.empty_array)
        assert.is_true(b.binary_roundtrip)
        assert.is_true(b.big_roundtrip)
        assert.equal(100, b.many)
        assert.equal("s1,100", b.many_ends)
        assert.equal(true, b.wrongtype[1])
        assert.matches("^WRONGTYPE Operation against a key holding the wrong kind of value", b.wrongtype[2])
        assert.equal(true, b.unknown[1])
        assert.matches("^ERR unknown command", b.unknown[2])
        assert.equal(true, b.not_integer[1])
        assert.matches("^ERR value is not an integer", b.not_integer[2])
        assert.same({ 1, { "two", { 3 } }, "four" }, b.script_nested)

        -- the handler's choice: its own status
        b = get_json(s, "/types?key=ty2&conflict=1", 409)
        assert.matches("^ERR value is not an integer", b.error)
        -- through web.check: a plain error, 500, logged
        local res = get(s, "/strict?key=st")
        assert.equal(500, res.status)
        assert.equal("INTERNAL", http.json(res).error.code)
        server.wait_until(function()
            return s:error_log():find("WRONGTYPE Operation against a key", 1, true)
        end, 2, "the error line of /strict")
    end)

    it("passes host.redis.call's arguments on as given (0 to 8, trailing nils) and returns v or nil, err", function()
        r:call("DEL", "ar", "ar:l")
        local b = get_json(s, "/arity?key=ar")
        assert.same({ 1, "PONG" }, b.one)
        assert.same({ 1, true }, b.two)
        assert.equal("OK", b.three)
        assert.equal("a", b.four)
        assert.equal("OK", b.five)
        assert.equal(4, b.six)
        assert.equal(9, b.seven)
        assert.equal(15, b.eight)
        assert.equal(15, #b.list)
        assert.equal("15", b.list[15])
        assert.equal(2, b.failed[1])
        assert.matches("^ERR unknown command", b.failed[2])
        assert.equal("host.redis.call: no command given", b.none)
        assert.equal("host.redis.call: argument #3 is a nil (strings and numbers only)", b.trailing_nil)
        assert.equal("host.redis.call: argument #7 is a nil (strings and numbers only)", b.nil_in_seven)
        assert.equal("host.redis.call: argument #2 is a table (strings and numbers only)", b.table_arg)
        assert.matches("app%.lua:%d+: host%.redis%.call: argument #3 is a nil", b.positioned)
    end)

    it("does host I/O inside user coroutines", function()
        r:call("DEL", "co")
        local b = get_json(s, "/co?key=co")
        assert.equal(1, b.a)
        assert.equal(2, b.b)
        assert.is_true(b.ok1)
        assert.equal("2!", b.v1)
        assert.is_true(b.ok2)
        assert.same({ 12, "12" }, b.v2)
    end)

    it("refuses Redis I/O at module load: the app does not load (fcfs -t exits 1)", function()
        s:write_lua("app.lua", 'local host = require "host"\nhost.redis.call("PING")\n'
            .. 'return require "redisspec_base"\n')
        local code, out = s:cli("-t")
        assert.equal(1, code, out)
        assert.matches("host.redis.call: host I/O is not allowed while modules load", out, 1, true)
        -- a reload to that app fails and the running generation keeps serving
        local res = assert(s:admin{ method = "POST", path = "/_host/reload", timeout = 10 })
        local b = http.json(res)
        assert.equal(false, b.ok)
        assert.matches("not allowed while modules load", b.error, 1, true)
        assert.equal("7", get_json(s, "/kv?k=7").v)
        s:write_lua("app.lua", APP)
        code, out = s:cli("-t")
        assert.equal(0, code, out)
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors{
            "MULTI needs a connection of its own",
            "WRONGTYPE Operation against a key",
            "not allowed while modules load",
        }
    end)
end)

-- Scripts across a failed reload (a server of its own: a single reload) ---------------------------

describe("host.redis scripts and reloads", function()
    local r, s

    setup(function()
        r = ctl.start()
        s = start_fcfs(r.unix)
    end)

    teardown(function()
        if s then s:stop() end
        if r then r:stop() end
    end)

    it("keeps the serving VM's scripts when a reload that changes them fails", function()
        r:call("DEL", "rl")
        assert.equal(1, get_json(s, "/run?name=incr_by&key=rl&by=1").v)
        -- the new code would change incr_by, then fails to load
        local broken = APP:gsub("INCRBY', KEYS%[1%], ARGV%[1%]%)", "SET', KEYS[1], 'replaced')", 1)
            :gsub("\nreturn app%s*$", "\nerror('redisspec: this reload fails')\nreturn app\n")
        assert.matches("this reload fails", broken, 1, true)
        s:write_lua("app.lua", broken)
        local res = assert(s:admin{ method = "POST", path = "/_host/reload", timeout = 10 })
        assert.equal(false, http.json(res).ok)
        assert.equal(2, get_json(s, "/run?name=incr_by&key=rl&by=1").v)
        assert.equal("2", r:call("GET", "rl"))
        s:write_lua("app.lua", APP)
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        -- the one reload of this block fails on purpose, in every worker: a worker that loads after
        -- the master refused the generation may report its snapshot gone instead of the error
        s:assert_no_errors{ "redisspec: this reload fails", "reload failed, generation 1 keeps serving" }
    end)
end)

-- Redis killed and restarted under load ------------------------------------------------------------

describe("host.redis when Redis dies", function()
    local r, s

    setup(function()
        r = ctl.start()
        s = start_fcfs(r.unix, { redis_timeout = 1, redis_connect_timeout = 0.5 })
    end)

    teardown(function()
        if s then
            s:stop()
        end
        if r then
            r:stop()
        end
    end)

    local function ready(want_status)
        local res = get(s, "/readyz")
        return res.status == want_status and http.json(res) or nil
    end

    it("answers 503 fast while it is down and recovers by itself within 2 s of its restart", function()
        local master, workers = s:pid(), s:worker_pids()
        assert.equal(WORKERS, #workers)
        assert.equal("1", get_json(s, "/kv?k=1").v)
        local body = server.wait_until(function() return ready(200) end, 5)
        if mysql_configured() then
            assert.is_table(body, "/readyz is not 200")
            assert.equal("ok", body.checks.redis)
        end
        assert.equal(1, pool_up(s))

        local load = ctl.load{ port = s.port, concurrency = 20, timeout = 5,
            path = function(i) return "/kv?k=" .. i end }
        local before = load:pump(0.5)
        assert.is_true(#before > 20)
        for _, q in ipairs(before) do
            assert.equal(200, q.status, tostring(q.err))
        end

        r:kill9()
        local t_kill = socket.gettime()
        load:pump(0.5)

        -- down: /readyz 503 naming Redis, the pool gauge 0
        local down = server.wait_until(function() return ready(503) end, 3, "/readyz 503")
        assert.is_truthy(({ unavailable = true, closed = true, timeout = true })[down.checks.redis],
            tostring(down.checks.redis))
        assert.is_false(down.ready)
        server.wait_until(function() return pool_up(s) == 0 end, 3, "fcfs_pool_up 0")
        load:pump(0.3)

        r:restart()
        local t_restart = socket.gettime()
        local first_ok
        while socket.gettime() < t_restart + 2.5 and not first_ok do
            for _, q in ipairs(load:pump(0.05)) do
                if q.status == 200 and q.t0 >= t_restart then
                    first_ok = first_ok or q.t1
                end
            end
        end
        load:pump(1.5)
        load:stop(5)

        assert.is_truthy(first_ok, "no request succeeded within 2.5 s of the restart")
        assert.is_true(first_ok - t_restart <= 2, "first success " .. (first_ok - t_restart) .. " s after restart")

        -- every request was answered, fast, 200 or a JSON 503 UNAVAILABLE
        local n503, slowest = 0, 0
        for _, q in ipairs(load.done) do
            assert.is_nil(q.err, "request " .. tostring(q.path) .. " failed: " .. tostring(q.err))
            slowest = math.max(slowest, q.t1 - q.t0)
            if q.status == 503 then
                n503 = n503 + 1
                local e = cjson.decode(q.body)
                assert.is_table(e, q.body)
                assert.equal("UNAVAILABLE", e.error.code)
                assert.is_truthy(({ unavailable = true, closed = true, timeout = true })[e.error.details.reason],
                    q.body)
                assert.is_true(q.t0 >= t_kill - 0.1 and q.t0 <= t_restart + 2, "a 503 outside the outage")
            else
                assert.equal(200, q.status, q.body)
            end
            if q.t0 >= t_restart + 2 then
                assert.equal(200, q.status, "still failing 2 s after the restart: " .. tostring(q.body))
            end
        end
        assert.is_true(n503 > 0, "no 503 while Redis was down")
        assert.is_true(slowest < 1.5, "slowest request took " .. slowest .. " s")

        -- up again: /readyz, the gauge, the same processes
        body = server.wait_until(function()
            local res = get(s, "/readyz")
            local b = http.json(res)
            return b.checks.redis == "ok" and b
        end, 2, "/readyz redis ok")
        if mysql_configured() then
            assert.is_true(body.ready)
            assert.equal(200, get(s, "/readyz").status)
        end
        server.wait_until(function() return pool_up(s) == 1 end, 2, "fcfs_pool_up 1")
        assert.equal(master, s:pid())
        assert.same(workers, s:worker_pids())
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors{ "redis: no connection up, calls fail fast" }
    end)
end)
