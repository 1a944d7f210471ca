-- Black-box specs of host.shared (shared-memory dictionaries), host.metrics.counter/gauge and
-- host.node_id: the real binary with two workers (or one process), a test app, real HTTP.
-- They cover exact counts under concurrent incr from both workers, TTL expiry, LRU eviction seen
-- in /metrics, values and metrics surviving a reload, app metrics summed over the workers, and a
-- worker killed with SIGKILL while both hammer a dictionary not wedging the other.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/shared_spec.lua
local socket = require "socket"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"

local format = string.format

local BASE_APP = server.repo_file("lua/app.lua")

local APP = [==[
local app = require "sharedspec_base"
local host = require "host"
local tonumber, type = tonumber, type

local hits = host.metrics.counter("spec_hits_total", "Hits of /m/inc, by every worker.")
local share = host.metrics.gauge("spec_share", "Each worker's share.")

local function dict(req)
    return host.shared[req:arg("d") or "limits"]
end

-- a value of the query string: n:<number>, b:true, s:<text>, or the text itself
local function value(v)
    if v == nil then return nil end
    local kind, rest = v:match("^(%a):(.*)$")
    if kind == "n" then return tonumber(rest) end
    if kind == "b" then return rest == "true" end
    return rest or v
end

local function answer(v, err)
    return { json = { v = v == nil and host.null or v, t = type(v), err = err, worker = host.worker_id } }
end

app:get("/version", function()
    return { json = { worker = host.worker_id, generation = host.generation, pid = host.pid } }
end)

app:get("/sh/get", function(req) return answer(dict(req):get(req:arg("k"))) end)
app:get("/sh/set", function(req)
    return answer(dict(req):set(req:arg("k"), value(req:arg("v")), tonumber(req:arg("ttl"))))
end)
app:get("/sh/add", function(req)
    return answer(dict(req):add(req:arg("k"), value(req:arg("v")), tonumber(req:arg("ttl"))))
end)
app:get("/sh/incr", function(req)
    return answer(dict(req):incr(req:arg("k"), tonumber(req:arg("n")) or 1, tonumber(req:arg("init")),
        tonumber(req:arg("ttl"))))
end)
app:get("/sh/delete", function(req) return answer(dict(req):delete(req:arg("k"))) end)
app:get("/sh/ttl", function(req) return answer(dict(req):ttl(req:arg("k"))) end)
app:get("/sh/flush", function(req) return answer(dict(req):flush_expired()) end)
app:get("/sh/fill", function(req)
    local d, n, pad = dict(req), tonumber(req:arg("n")), ("x"):rep(tonumber(req:arg("size")) or 100)
    for i = 1, n do
        local ok, err = d:set("fill" .. i, pad)
        if not ok then return answer(nil, err) end
    end
    return answer(n)
end)
-- n incr of one key, yielding every 1000 so the loop keeps beating
app:get("/sh/hammer", function(req)
    local d, k, n = dict(req), req:arg("k"), tonumber(req:arg("n"))
    local last
    for i = 1, n do
        last = assert(d:incr(k, 1, 0))
        if i % 1000 == 0 then host.sleep(0) end
    end
    return answer(last)
end)
app:get("/sh/names", function()
    local names = {}
    for name in pairs(host.shared) do names[#names + 1] = name end
    table.sort(names)
    return { json = { names = names, node_id = host.node_id, limits = tostring(host.shared.limits),
                      config = host.config.shared_dicts } }
end)

app:get("/m/inc", function(req)
    hits:inc(tonumber(req:arg("n")))
    return answer(true)
end)
app:get("/m/share", function(req)
    share:set(tonumber(req:arg("v")))
    return answer(true)
end)
for i = 1, 300 do
    app:get("/r/" .. i, function(req) return { status = tonumber(req:arg("s")) or 200, json = { i = i } } end)
end

app:get("/m/bad", function(req)
    local ok, err = pcall(host.metrics[req:arg("type")], req:arg("name"))
    return answer(ok, not ok and err or nil)
end)

return app
]==]

local function start(conf)
    local c = {
        redis = "127.0.0.1:" .. raw.free_port(), -- nothing listens there: no Redis needed
        drain_timeout = 1,
        shared_dicts = { limits = "1m", tiny = "16k" },
    }
    for k, v in pairs(conf or {}) do
        c[k] = v
    end
    return server.start{ app = APP, lua_files = { ["sharedspec_base.lua"] = BASE_APP }, conf = c }
end

local get = http.get_json

describe("host.shared, one process", function()
    local s
    setup(function()
        s = start{ workers = 0, node_id = "node-7" }
    end)
    teardown(function()
        s:stop()
        s:assert_no_errors()
    end)

    it("lists the configured dictionaries, and host.node_id", function()
        local r = get(s.port, "/sh/names")
        assert.same({ "limits", "tiny" }, r.names)
        assert.equal("node-7", r.node_id)
        assert.equal("host.shared.limits", r.limits)
        assert.same({ limits = 1048576, tiny = 16384 }, r.config)
    end)

    it("stores strings, numbers and booleans; set to nil deletes", function()
        assert.is_true(get(s.port, "/sh/set?k=a&v=s:hello").v)
        assert.same({ v = "hello", t = "string", worker = 0 }, get(s.port, "/sh/get?k=a"))
        get(s.port, "/sh/set?k=a&v=n:2.5")
        assert.equal(2.5, get(s.port, "/sh/get?k=a").v)
        get(s.port, "/sh/set?k=a&v=b:false")
        local r = get(s.port, "/sh/get?k=a")
        assert.equal(false, r.v)
        assert.equal("boolean", r.t)
        get(s.port, "/sh/set?k=a")
        assert.equal("nil", get(s.port, "/sh/get?k=a").t)
        assert.equal("nil", get(s.port, "/sh/get?k=never").t)
        -- get's FFI face reads into a 1 KiB buffer: a longer string comes back whole all the same
        local big = ("v"):rep(1500)
        get(s.port, "/sh/set?k=big&v=s:" .. big)
        assert.same({ v = big, t = "string", worker = 0 }, get(s.port, "/sh/get?k=big"))
        r = get(s.port, "/sh/get?k=" .. ("k"):rep(251))
        assert.equal("nil", r.t)
        assert.equal("key too long", r.err)
    end)

    it("add, incr, delete and their errors", function()
        assert.is_true(get(s.port, "/sh/add?k=x&v=n:1").v)
        assert.equal("exists", get(s.port, "/sh/add?k=x&v=n:1").err)
        assert.equal(6, get(s.port, "/sh/incr?k=x&n=5").v)
        assert.equal("not found", get(s.port, "/sh/incr?k=y").err)
        assert.equal(11, get(s.port, "/sh/incr?k=y&n=1&init=10").v)
        get(s.port, "/sh/set?k=str&v=s:abc")
        assert.equal("not a number", get(s.port, "/sh/incr?k=str&init=0").err)
        assert.is_true(get(s.port, "/sh/delete?k=x").v)
        assert.equal("nil", get(s.port, "/sh/get?k=x").t)
        assert.equal("key too long", get(s.port, "/sh/set?v=1&k=" .. ("k"):rep(251)).err)
        assert.is_true(get(s.port, "/sh/set?v=1&k=" .. ("k"):rep(250)).v)
    end)

    it("expires entries after their ttl", function()
        get(s.port, "/sh/set?k=brief&v=s:soon&ttl=0.3")
        get(s.port, "/sh/set?k=forever&v=s:x")
        local left = get(s.port, "/sh/ttl?k=brief").v
        assert.is_true(left > 0 and left <= 0.3, tostring(left))
        assert.equal(0, get(s.port, "/sh/ttl?k=forever").v)
        assert.equal("soon", get(s.port, "/sh/get?k=brief").v)
        socket.sleep(0.45)
        assert.equal("nil", get(s.port, "/sh/get?k=brief").t)
        assert.equal("not found", get(s.port, "/sh/ttl?k=brief").err)
        get(s.port, "/sh/set?k=e1&v=1&ttl=0.05")
        get(s.port, "/sh/set?k=e2&v=1&ttl=0.05")
        socket.sleep(0.1)
        assert.equal(2, get(s.port, "/sh/flush").v)
        assert.equal("x", get(s.port, "/sh/get?k=forever").v)
    end)

    it("evicts the least recently used entries when full, counted in /metrics", function()
        local text = s:metrics()
        local cap = raw.metric(text, 'fcfs_shared_capacity_bytes{dict="tiny"}')
        assert.is_true(cap > 8000 and cap <= 16384, tostring(cap))
        assert.equal(0, raw.metric(text, 'fcfs_shared_evictions_total{dict="tiny"}'))
        assert.equal(1000, get(s.port, "/sh/fill?d=tiny&n=1000&size=100").v)
        text = s:metrics()
        local evicted = raw.metric(text, 'fcfs_shared_evictions_total{dict="tiny"}')
        assert.is_true(evicted > 800, tostring(evicted))
        assert.is_true(raw.metric(text, 'fcfs_shared_used_bytes{dict="tiny"}') <= cap)
        assert.equal(1000 - evicted, raw.metric(text, 'fcfs_shared_entries{dict="tiny"}'))
        assert.equal("nil", get(s.port, "/sh/get?d=tiny&k=fill1").t)
        assert.equal("string", get(s.port, "/sh/get?d=tiny&k=fill1000").t)
        assert.equal(0, raw.metric(text, 'fcfs_shared_evictions_total{dict="limits"}'))
    end)

    it("labels 300 routes x 2 statuses in fcfs_requests_total without overflow", function()
        local c = assert(http.connect(s.port))
        for i = 1, 300 do
            assert.equal(200, assert(c:request{ path = "/r/" .. i }).status)
            assert.equal(201, assert(c:request{ path = "/r/" .. i .. "?s=201" }).status)
        end
        c:close()
        local text = s:metrics()
        for i = 1, 300 do
            assert.equal(1, raw.metric(text, format('fcfs_requests_total{route="/r/%d",status="200"}', i)))
            assert.equal(1, raw.metric(text, format('fcfs_requests_total{route="/r/%d",status="201"}', i)))
        end
        assert.equal(0, raw.metric(text, "fcfs_requests_unlabelled_total"))
    end)

    it("refuses bad metric names and a name declared with the other type", function()
        local r = get(s.port, "/m/bad?type=counter&name=fcfs_mine")
        assert.is_false(r.v)
        assert.matches("bad name", r.err)
        r = get(s.port, "/m/bad?type=gauge&name=spec_hits_total")
        assert.matches("already declared as a counter", r.err)
        r = get(s.port, "/m/bad?type=counter&name=spec_hits_total")
        assert.is_true(r.v)
    end)
end)

describe("host.shared and host.metrics, two workers", function()
    local s
    setup(function()
        s = start{ workers = 2 }
    end)
    teardown(function()
        s:stop()
        s:assert_no_errors()
    end)

    it("counts exactly 2,000 from 2,000 concurrent incr requests spread over both workers", function()
        local req = "GET /sh/incr?k=hits&init=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        local by_worker = { [0] = 0, [1] = 0 }
        for _ = 1, 10 do
            local results = raw.fanout{ port = s.port, n = 200, request = req, timeout = 20 }
            for _, r in ipairs(results) do
                assert.equal(200, r.status, r.err or r.body)
                assert.matches('"v":%d+', r.body)
                local w = tonumber(r.body:match('"worker":(%d)'))
                by_worker[w] = by_worker[w] + 1
            end
        end
        assert.equal(2000, get(s.port, "/sh/get?k=hits").v)
        assert.is_true(by_worker[0] > 0 and by_worker[1] > 0,
            format("worker 0: %d, worker 1: %d", by_worker[0], by_worker[1]))
    end)

    it("counts exactly when both workers hammer one key at the same time", function()
        local conns = s:conn_per_worker(2)
        for id = 0, 1 do
            assert(conns[id]:send_raw("GET /sh/hammer?k=both&n=20000 HTTP/1.1\r\nHost: x\r\n\r\n"))
        end
        for id = 0, 1 do
            conns[id]:settimeout(30)
            local res = assert(conns[id]:read_response())
            assert.equal(200, res.status, res.body)
            conns[id]:close()
        end
        assert.equal(40000, get(s.port, "/sh/get?k=both").v)
    end)

    it("sums an app counter over both workers; gauges are the sum of each worker's share", function()
        local conns = s:conn_per_worker(2)
        local base = raw.metric(s:metrics(), "spec_hits_total")
        assert.equal(0, base)
        for _ = 1, 3 do get(conns[0], "/m/inc") end
        for _ = 1, 4 do get(conns[1], "/m/inc?n=2") end
        get(conns[0], "/m/share?v=5")
        get(conns[1], "/m/share?v=7")
        local text = s:metrics()
        assert.equal(11, raw.metric(text, "spec_hits_total"))
        assert.equal(12, raw.metric(text, "spec_share"))
        assert.matches("# HELP spec_hits_total Hits of /m/inc, by every worker.\n# TYPE spec_hits_total counter\n",
            text, 1, true)
        assert.matches("# TYPE spec_share gauge\n", text, 1, true)
        for id = 0, 1 do conns[id]:close() end
    end)

    it("keeps dictionary values and app metrics across a reload (HUP)", function()
        get(s.port, "/sh/set?k=kept&v=s:across")
        local counted = raw.metric(s:metrics(), "spec_hits_total")
        s:reload_workers(2)
        local conns = s:conn_per_worker(2)
        for id = 0, 1 do
            assert.equal("across", get(conns[id], "/sh/get?k=kept").v)
            get(conns[id], "/m/inc")
            conns[id]:close()
        end
        assert.equal(2000, get(s.port, "/sh/get?k=hits").v)
        assert.equal(counted + 2, raw.metric(s:metrics(), "spec_hits_total"))
    end)
end)

describe("host.shared, a worker killed while both hammer", function()
    it("does not wedge the other worker nor the dictionary", function()
        local s = start{ workers = 2 }
        finally(function()
            s:stop()
        end)
        local victims = {}
        for round = 1, 3 do
            local conns = s:conn_per_worker(2)
            local victim = get(conns[1], "/version").pid
            for id = 0, 1 do
                assert(conns[id]:send_raw("GET /sh/hammer?k=storm&n=300000 HTTP/1.1\r\nHost: x\r\n\r\n"))
            end
            socket.sleep(0.05 + 0.05 * round)
            assert(os.execute("kill -9 " .. victim))
            victims[#victims + 1] = victim
            -- the survivor finishes its 300,000 incr: the lock did not stay with the dead
            conns[0]:settimeout(60)
            local res = assert(conns[0]:read_response())
            assert.equal(200, res.status, res.body)
            conns[0]:close()
            conns[1]:close()
            server.wait_until(function()
                return #s:worker_pids() == 2
            end, 10, "the killed worker to be replaced")
        end
        assert.equal(1, get(s.port, "/sh/incr?k=after&init=0").v)
        assert.equal(1, get(s.port, "/sh/get?k=after").v)
        local text = s:metrics()
        print(format("\n# kill -9 while hammering: %d owner death(s) met, %d reset(s)",
            raw.metric(text, 'fcfs_shared_owner_deaths_total{dict="limits"}'),
            raw.metric(text, 'fcfs_shared_resets_total{dict="limits"}')))
        s:stop()
        local allowed = {}
        for i, v in ipairs(victims) do
            allowed[i] = "%(pid " .. v .. "%) killed by signal 9"
        end
        s:assert_no_errors(allowed)
    end)
end)
