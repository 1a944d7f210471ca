-- Black-box specs of the host's lifecycle on its rare paths: a reload whose init_worker raises
-- (under load, with two workers), a worker respawned after a failed reload, a reload that only one
-- worker can take, a reload with drain_timeout = 0 while requests are in flight, and
-- host.exiting() telling timer loops that their generation is over.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/lifecycle_spec.lua
local socket = require "socket"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local shell = require "spec.support.shell"

local format = string.format

-- A test app.lua from the Lua of its routes (which may use `app` and `host`), over the repository's
-- routes (the module lifecycle_base).
local function app_of(routes)
    return 'local app = require "lifecycle_base"\nlocal host = require "host"\n' .. routes .. "\nreturn app\n"
end

-- The test app: the repository's operational routes plus /version and /sleep; `init` is Lua
-- source run by init_worker (it may raise).
local function app_source(version, init)
    return app_of(format([==[
local tonumber = tonumber
local VERSION = %q

app:init_worker(function()
    %s
end)

app:get("/version", function()
    return { json = { v = VERSION, pid = host.pid, worker = host.worker_id, generation = host.generation } }
end)

app:get("/exiting", function() return { json = { exiting = host.exiting() } } end)

app:get("/sleep", function(req)
    host.sleep(tonumber(req:arg("s")) or 0.2)
    return { json = { v = VERSION } }
end)
]==], version, init or ""))
end

-- Start fcfs with the app.lua src over the config conf; no Redis unless conf names one.
local function start_app(src, conf)
    local c = { workers = 0, redis = "127.0.0.1:" .. raw.free_port(), drain_timeout = 1 }
    for k, v in pairs(conf) do
        c[k] = v
    end
    return server.start{ app = src, base_module = "lifecycle_base", conf = c }
end

local function start(conf, version, init)
    return start_app(app_source(version, init), conf)
end

local function eventually(fn, timeout, what)
    return server.wait_until(fn, timeout or 5, what or "a condition")
end

local function version(port)
    local res = assert(http.request{ port = port, path = "/version", timeout = 5 })
    assert.equal(200, res.status, res.body)
    return http.json(res)
end

-- Every one of the two workers, on its own connection, serves version v.
local function assert_both_workers_serve(s, v)
    local conns = s:conn_per_worker(2)
    for id = 0, 1 do
        local res = assert(conns[id]:request{ path = "/version" })
        assert.equal(200, res.status, res.body)
        assert.equal(v, http.json(res).v, "worker " .. id)
        conns[id]:close()
    end
end

-- wrk in the background for `seconds` on path; returns a function that waits for it and returns
-- its report.
local function load(s, path, seconds)
    local out = s.dir .. "/wrk.out"
    assert(os.execute(format("wrk -t2 -c16 -d%ds %s%s >%s 2>&1 &", seconds, s.url, path, shell.q(out))))
    return function()
        return eventually(function()
            local text = shell.read_file(out) or ""
            return text:find("Transfer/sec", 1, true) and text
        end, seconds + 10, "wrk to finish")
    end
end

local function assert_clean_load(report)
    assert.matches("requests in", report, 1, true)
    assert.is_nil(report:find("Non%-2xx"), "wrk saw non-2xx answers:\n" .. report)
    assert.is_nil(report:find("Socket errors"), "wrk saw socket errors:\n" .. report)
end

describe("lifecycle, reload whose init_worker raises", function()
    local s
    setup(function()
        s = start({ workers = 2 }, "A")
    end)
    teardown(function()
        s:stop()
    end)

    it("keeps the old generation serving under load; -s reload and POST /_host/reload report the error",
        function()
            local gen = version(s.port).generation
            local workers = s:worker_pids()
            local wait = load(s, "/version", 4)
            socket.sleep(0.5)
            s:write_lua("app.lua", app_source("B", 'error("init-marker-51c2")'))
            local code, out = s:cli("-s reload")
            assert.are_not.equal(0, code, out)
            assert.matches("init-marker-51c2", out, 1, true)

            local res = assert(s:admin{ method = "POST", path = "/_host/reload", timeout = 40 })
            assert.equal(500, res.status, res.body)
            local body = http.json(res)
            assert.is_false(body.ok)
            assert.matches("init-marker-51c2", body.error, 1, true)

            assert_clean_load(wait())
            local v = version(s.port)
            assert.equal("A", v.v)
            assert.equal(gen, v.generation)
            assert.same(workers, s:worker_pids()) -- nobody died
            assert.is_nil(s:error_log():find("killed by signal", 1, true), s:error_log())
        end)

    it("respawns a killed worker with the last accepted code, not the refused code left in lua_dir",
        function()
            local victim = s:worker_pids()[1]
            assert(os.execute("kill -9 " .. victim))
            eventually(function()
                local pids = s:worker_pids()
                return #pids == 2 and pids[1] ~= victim and pids[2] ~= victim
            end, 5, "the worker to be respawned")
            -- both workers answer "A" (the respawned one did not crash-loop on B's init)
            assert_both_workers_serve(s, "A")
            assert.equal(1, raw.metric(s:metrics(), "fcfs_worker_restarts_total"))
        end)

    it("accepts the next good reload on every worker", function()
        s:write_lua("app.lua", app_source("C"))
        local code, out = s:cli("-s reload")
        assert.equal(0, code, out)
        assert.matches("reloaded", out, 1, true)
        assert_both_workers_serve(s, "C")
        s:stop()
        s:assert_no_errors{ "init%-marker%-51c2", "reload failed", "killed by signal 9" }
    end)
end)

describe("lifecycle, a reload only one worker can take", function()
    it("is refused on every worker: siblings never run different code", function()
        local s = start({ workers = 2 }, "A")
        finally(function()
            s:stop()
        end)
        s:write_lua("app.lua", app_source("B", 'if host.worker_id == 1 then error("only-one-7d0e") end'))
        local code, out = s:cli("-s reload")
        assert.are_not.equal(0, code, out)
        assert.matches("worker 1: init_worker", out, 1, true)
        assert.matches("only-one-7d0e", out, 1, true)
        assert_both_workers_serve(s, "A")
        s:stop()
        s:assert_no_errors{ "only%-one%-7d0e", "reload failed" }
    end)
end)

describe("lifecycle, signals to a worker that is still starting", function()
    it("never kill it: reloads and log reopens sent while workers respawn leave no worker dead", function()
        local s = start({ workers = 2 }, "A")
        finally(function()
            s:stop()
        end)
        local master = s:pid()
        for _ = 1, 5 do
            local pids = s:worker_pids()
            assert(os.execute("kill -9 " .. pids[1] .. " " .. pids[2]))
            -- log reopens (relayed to the workers at once) and reloads, every few ms for about a
            -- second, while the master respawns both workers (within 0.5 s)
            assert(os.execute(format("for i in $(seq 150); do kill -USR1 %d; kill -HUP %d; sleep 0.005; done",
                master, master)))
            eventually(function()
                return #s:worker_pids() == 2
            end, 5, "both workers respawned")
        end
        assert_both_workers_serve(s, "A")
        assert.is_nil(s:error_log():find("killed by signal 1,", 1, true), "a worker died of SIGHUP")
        assert.is_nil(s:error_log():find("killed by signal 10,", 1, true), "a worker died of SIGUSR1")
        assert.is_nil(s:error_log():find("killed by signal 12,", 1, true), "a worker died of SIGUSR2")
    end)
end)

describe("lifecycle, an init_worker that outlives reload_timeout", function()
    it("is refused and cancelled; the next reload goes through", function()
        local s = start({ workers = 2, reload_timeout = 1 }, "A")
        finally(function()
            s:stop()
        end)
        s:write_lua("app.lua", app_source("B", "host.sleep(30)"))
        local t0 = socket.gettime()
        local code, out = s:cli("-s reload")
        assert.are_not.equal(0, code, out)
        assert.matches("did not load and initialise it within 1 s", out, 1, true)
        assert.is_true(socket.gettime() - t0 < 5)
        assert.equal("A", version(s.port).v)
        s:write_lua("app.lua", app_source("C"))
        code, out = s:cli("-s reload")
        assert.equal(0, code, out)
        assert_both_workers_serve(s, "C")
        s:stop()
        s:assert_no_errors{ "reload failed" }
    end)
end)

describe("lifecycle, drain_timeout = 0", function()
    it("cancels the old generation's in-flight requests at a reload without touching a dead timer",
        function()
            local s = start({ workers = 0, drain_timeout = 0 }, "A")
            finally(function()
                s:stop()
            end)
            local conns = {}
            for i = 1, 5 do
                conns[i] = assert(http.connect(s.port))
                assert(conns[i]:send_raw("GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n"))
            end
            eventually(function()
                local m = s:metrics()
                return (raw.metric(m, "fcfs_requests_in_flight") or 0) >= 6
            end, 5, "the sleepers to be in flight")
            s:write_lua("app.lua", app_source("B"))
            local code, out = s:cli("-s reload")
            assert.equal(0, code, out)
            for i = 1, 5 do
                local res = assert(conns[i]:read_response())
                assert.equal(503, res.status)
                conns[i]:close()
            end
            assert.equal("B", version(s.port).v)
            s:stop()
            s:assert_no_errors()
        end)
end)

describe("lifecycle, host.exiting()", function()
    it("is false while serving and turns true in a retired generation, ending its loops promptly",
        function()
            local loop = [[
    host.timer.at(0, function(premature)
        if premature then return end
        local gen = host.generation
        while not host.exiting() do host.sleep(0.02) end
        host.log("warn", "loop-ended generation ", gen)
    end)]]
            local s = start({ workers = 0, drain_timeout = 30 }, "A", loop)
            finally(function()
                s:stop()
            end)
            local res = assert(http.request{ port = s.port, path = "/exiting" })
            assert.is_false(http.json(res).exiting)
            local gen = version(s.port).generation
            s:write_lua("app.lua", app_source("B", loop))
            local t0 = socket.gettime()
            local code, out = s:cli("-s reload")
            assert.equal(0, code, out)
            eventually(function()
                return s:error_log():find("loop-ended generation " .. gen, 1, true)
            end, 2, "the old generation's loop to end")
            assert.is_true(socket.gettime() - t0 < 2)
            assert.is_false(http.json(assert(http.request{ port = s.port, path = "/exiting" })).exiting)
            s:stop()
            s:assert_no_errors()
        end)

    it("turns true in a worker told to stop (QUIT), so a waiting handler ends at once", function()
        local s = start_app(app_of([[
app:get("/wait", function()
    local t0 = host.now()
    while not host.exiting() and host.now() - t0 < 20 do host.sleep(0.02) end
    return { json = { exiting = host.exiting() } }
end)
]]), { drain_timeout = 30 })
        finally(function()
            s:stop()
        end)
        local c = assert(http.connect(s.port))
        assert(c:send_raw("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"))
        eventually(function()
            local m = s:metrics()
            return (raw.metric(m, "fcfs_requests_in_flight") or 0) >= 2
        end, 5, "the waiting request to be in flight")
        local pid = s:pid()
        local t0 = socket.gettime()
        assert.is_true(s:signal("QUIT"))
        local res = assert(c:read_response())
        assert.equal(200, res.status)
        assert.is_true(http.json(res).exiting)
        eventually(function()
            return not shell.alive(pid)
        end, 3, "the worker to exit")
        assert.is_true(socket.gettime() - t0 < 3)
        c:close()
        s:stop()
        s:assert_no_errors()
    end)
end)

describe("lifecycle, timers", function()
    local TIMERS = [==[
local pcall, tostring = pcall, tostring

local every = { runs = 0, running = 0, overlap = 0 }

app:init_worker(function()
    host.timer.every(0.05, function(premature)
        if premature then return end
        every.runs = every.runs + 1
        every.running = every.running + 1
        if every.running > every.overlap then every.overlap = every.running end
        host.sleep(0.3) -- six ticks long
        every.running = every.running - 1
    end)
end)

app:get("/every", function() return { json = every } end)

-- each bad delay: is it refused by host.sleep and by host.timer.at?
app:get("/bad_delays", function()
    local out = {}
    for _, d in ipairs{ 0 / 0, 1 / 0, -1 / 0, -1 } do
        local ok_sleep = pcall(host.sleep, d)
        local ok_at = pcall(host.timer.at, d, function() end)
        out[#out + 1] = tostring(ok_sleep) .. "/" .. tostring(ok_at)
    end
    return { json = out }
end)

app:get("/many", function()
    local out = {}
    for i = 1, 5 do
        local ok, err = host.timer.at(60, function() end)
        out[i] = ok and "ok" or err
    end
    return { json = { results = out, pending = host.timer.pending() } }
end)
]==]

    it("refuses NaN, infinite and negative delays, caps pending timers, never overlaps an every-run",
        function()
            -- the every-timer is pending too: 1 + 3 = max_pending_timers
            local s = start_app(app_of(TIMERS), { max_pending_timers = 4 })
            finally(function()
                s:stop()
            end)
            local res = assert(http.request{ port = s.port, path = "/bad_delays" })
            assert.same({ "false/false", "false/false", "false/false", "false/false" }, http.json(res))
            res = assert(http.request{ port = s.port, path = "/many" })
            local many = http.json(res)
            assert.same({ "ok", "ok", "ok", "too many timers", "too many timers" }, many.results)
            assert.equal(4, many.pending)
            socket.sleep(1.2)
            local every = http.json(assert(http.request{ port = s.port, path = "/every" }))
            assert.is_true(every.runs >= 3, "runs: " .. every.runs)
            assert.equal(1, every.overlap)
            s:stop()
            s:assert_no_errors()
        end)
end)

describe("lifecycle, config", function()
    local function check(conf_src, env)
        local path = os.tmpname()
        local f = assert(io.open(path, "w"))
        f:write(conf_src)
        f:close()
        -- from the repository root, where lua_dir = "lua" exists; sanitizer reports checked
        local rc, out = server.run({ "-c", path, "-t" }, env, { cwd = server.root })
        os.remove(path)
        return rc, out
    end

    it("refuses NaN and infinity for numeric keys, from the file and from the environment", function()
        for _, src in ipairs{ "return { drain_timeout = 0/0 }", "return { request_timeout = 1/0 }",
            "return { max_body = 0/0 }" } do
            local rc, out = check(src)
            assert.equal(1, rc, src .. ": " .. out)
            assert.matches("must be a number", out, 1, true)
        end
        local rc, out = check("return {}", { FCFS_HEARTBEAT_TIMEOUT = "nan" })
        assert.equal(1, rc, out)
        assert.matches("FCFS_HEARTBEAT_TIMEOUT", out, 1, true)
    end)

    it("wants mysql_host as an IP literal and client_abort as finish or cancel", function()
        local rc, out = check('return { mysql_host = "db.example" }')
        assert.equal(1, rc, out)
        assert.matches("mysql_host must be an IP address", out, 1, true)
        rc, out = check('return { mysql_host = "::1", lua_dir = "lua" }')
        assert.equal(0, rc, out)
        rc, out = check('return { client_abort = "ignore" }')
        assert.equal(1, rc, out)
        assert.matches("client_abort", out, 1, true)
    end)
end)

describe("lifecycle, write backpressure", function()
    it("stops serving a pipelining client that never reads, even one request per read", function()
        local s = start_app(app_of([[
local BIG = string.rep("x", 1024 * 1024)
app:get("/big", function() return { body = BIG } end)
]]), {})
        finally(function()
            s:stop()
        end)
        local sample = 'fcfs_requests_total{route="/big",status="200"}'
        local function served()
            local m = s:metrics()
            return raw.metric(m, sample) or 0
        end
        local c = assert(socket.connect("127.0.0.1", s.port))
        c:settimeout(0.05)
        -- one request per write, the next one only once the last was served, so that each arrives
        -- alone (the read_cb fast path); the client never reads
        local base, n = served(), 0
        for _ = 1, 100 do
            if not c:send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n") then
                break
            end
            if not server.wait_until(function()
                return served() > base + n
            end, 0.3) then
                break
            end
            n = n + 1
        end
        -- 100 x 1 MiB would be 100 MiB queued in the worker; the kernel's socket buffers (up to
        -- tcp_rmem + tcp_wmem, 36 MiB here) and the write-queue bound hold less
        assert.is_true(n < 70, format("%d requests served to a client that reads nothing", n))
        c:close()
        assert.equal(200, assert(http.request{ port = s.port, path = "/healthz" }).status)
        s:stop()
        s:assert_no_errors()
    end)
end)

describe("lifecycle, response headers set by handlers", function()
    local s
    setup(function()
        s = start_app(app_of([==[
local CASES = {
    cookies = { ["Set-Cookie"] = { "a=1; Path=/", "b=2; Path=/" } },
    lower_id = { ["x-request-id"] = "mine-1", ["content-type"] = "text/plain" },
    own_type = { ["Content-Type"] = "text/plain" },
    bad_name = { ["Bad Name"] = "x" },
    bad_value = { ["X-A"] = "a\0b" },
    bad_value_del = { ["X-A"] = "a\127" },
    injection = { ["X-A"] = "a\r\nX-Injected: 1" },
    content_length = { ["Content-Length"] = "5" },
    transfer_encoding = { ["transfer-encoding"] = "chunked" },
    connection = { ["Connection"] = "close" },
    twice = { ["X-Twice"] = "a", ["x-twice"] = "b" },
    too_long = { ["X-Long"] = string.rep("v", 9000) },
    bad_type = { ["X-B"] = true },
}
local web = require "lib.web"
local FROZEN = {
    frozen = web.headers { ["Set-Cookie"] = { "a=1; Path=/", "b=2; Path=/" }, ["X-F"] = "1" },
    frozen_bad = web.headers { Server = "mine" },
    frozen_written = web.headers { ["X-F"] = "1" },
    frozen_late = web.headers { ["X-L"] = "1" },
}
rawset(FROZEN.frozen_written, "X-G", "2")
-- written to after it answered (its lines made and kept)
app:post("/late-write", function()
    rawset(FROZEN.frozen_late, "X-M", "2")
    return { body = "written" }
end)
app:get("/h/:case", function(req)
    return { body = "ok", headers = CASES[req.params.case] or FROZEN[req.params.case] }
end)
]==]), {})
    end)
    teardown(function()
        s:stop()
    end)

    local function get(case)
        return assert(http.request{ port = s.port, path = "/h/" .. case })
    end

    local function count(res, name)
        local n = 0
        for _, h in ipairs(res.header_list) do
            if h[1]:lower() == name then
                n = n + 1
            end
        end
        return n
    end

    it("sends a list value once per element (several Set-Cookie)", function()
        local res = get("cookies")
        assert.equal(200, res.status)
        local cookies = {}
        for _, h in ipairs(res.header_list) do
            if h[1] == "Set-Cookie" then
                cookies[#cookies + 1] = h[2]
            end
        end
        assert.same({ "a=1; Path=/", "b=2; Path=/" }, cookies)
    end)

    it("matches names case-insensitively: a handler's x-request-id replaces the host's", function()
        local res = get("lower_id")
        assert.equal(200, res.status)
        assert.equal(1, count(res, "x-request-id"))
        assert.equal("mine-1", res.headers["x-request-id"])
        assert.equal(1, count(res, "content-type"))
        assert.equal("text/plain", res.headers["content-type"])
        assert.equal(1, count(get("own_type"), "content-type"))
    end)

    it("answers 500 and logs the handler's bad header, never sending it", function()
        for _, case in ipairs{ "bad_name", "bad_value", "bad_value_del", "injection", "content_length",
            "transfer_encoding", "connection", "twice", "too_long", "bad_type" } do
            local res = get(case)
            assert.equal(500, res.status, case)
            assert.is_nil(res.headers["x-injected"])
            assert.is_nil(res.headers["x-a"])
            assert.equal(1, count(res, "content-length"), case)
            assert.equal(1, count(res, "connection"), case)
            assert.equal("INTERNAL", http.json(res).error.code, case)
        end
        local log = s:error_log()
        for _, what in ipairs{ '"Bad Name": name is not a token', '"X-A": control character',
            '"Content-Length": set by the host', '"transfer-encoding": set by the host',
            '"Connection": set by the host', "set twice", '"X-Long": header block too long',
            '"X-B": values must be strings' } do
            assert.matches(what, log, 1, true)
        end
    end)

    it("sends a frozen header table (web.headers) at every answer, checked like any other", function()
        for _ = 1, 3 do -- the first answer makes the header lines, the next ones reuse them
            local res = get("frozen")
            assert.equal(200, res.status)
            assert.equal("1", res.headers["x-f"])
            assert.equal(2, count(res, "set-cookie"))
            assert.equal(500, get("frozen_bad").status)
            assert.equal(500, get("frozen_written").status)
        end
        local log = s:error_log()
        assert.matches('"Server": set by the host', log, 1, true)
        assert.matches("frozen header table written to", log, 1, true)
    end)

    it("refuses a frozen header table written to after it answered", function()
        for _ = 1, 3 do
            local res = get("frozen_late")
            assert.equal(200, res.status)
            assert.equal("1", res.headers["x-l"])
            assert.is_nil(res.headers["x-m"])
        end
        local res = assert(http.request{ port = s.port, method = "POST", path = "/late-write" })
        assert.equal(200, res.status)
        for _ = 1, 2 do
            res = get("frozen_late")
            assert.equal(500, res.status)
            assert.is_nil(res.headers["x-m"])
        end
    end)
end)

describe("lifecycle, a client that goes away mid-request", function()
    local APP = [==[
local tonumber = tonumber

app:get("/write", function(req)
    host.sleep(tonumber(req:arg("s")) or 0.3)
    local ok, err = host.redis.call("SET", req:arg("key"), "written")
    host.log("warn", "handler-finished ", req:arg("key"), " ", tostring(ok or err))
    return { json = { ok = true } }
end)

app:get("/read", function(req)
    local v = host.redis.call("GET", req:arg("key"))
    return { json = { v = v ~= host.null and v or false } }
end)
]==]

    local function start_redis_app(conf)
        conf.redis = os.getenv("FCFS_TEST_REDIS")
        conf.request_timeout = conf.request_timeout or 5
        return start_app(app_of(APP), conf)
    end

    local function key()
        return format("lifecycle:abort:%d:%d", os.time(), math.random(1e9))
    end

    local function read(s, k)
        return http.json(assert(http.request{ port = s.port, path = "/read?key=" .. k })).v
    end

    local function send_and_close(s, path)
        local c = assert(http.connect(s.port))
        assert(c:send_raw("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
        eventually(function()
            local m = s:metrics()
            return (raw.metric(m, "fcfs_requests_in_flight") or 0) >= 2
        end, 5, "the request to be in flight")
        c:close()
    end

    it("by default finishes the handler: its Redis write happens after the client closed", function()
        local s = start_redis_app{}
        finally(function()
            s:stop()
        end)
        local k = key()
        send_and_close(s, "/write?s=0.3&key=" .. k)
        eventually(function()
            return read(s, k) == "written"
        end, 5, "the handler's write")
        -- a half-closed client still gets its answer
        local k2 = key()
        local c = assert(http.connect(s.port))
        assert(c:send_raw("GET /write?s=0.2&key=" .. k2 .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
        c.sock:shutdown("send")
        local res = assert(c:read_response())
        assert.equal(200, res.status)
        c:close()
        assert.equal("written", read(s, k2))
        s:stop()
        s:assert_no_errors()
    end)

    it("with client_abort = \"cancel\" stops the handler at its next I/O", function()
        local s = start_redis_app{ client_abort = "cancel" }
        finally(function()
            s:stop()
        end)
        local k = key()
        send_and_close(s, "/write?s=0.3&key=" .. k)
        socket.sleep(0.6)
        assert.is_false(read(s, k))
        assert.is_nil(s:error_log():find("handler-finished " .. k, 1, true))
        s:stop()
        s:assert_no_errors()
    end)

    it("still cancels on the request deadline (504)", function()
        local s = start_redis_app{ request_timeout = 0.2 }
        finally(function()
            s:stop()
        end)
        local k = key()
        local res = assert(http.request{ port = s.port, path = "/write?s=0.5&key=" .. k })
        assert.equal(504, res.status)
        socket.sleep(0.5)
        assert.is_false(read(s, k))
        s:stop()
        s:assert_no_errors{ "request deadline" }
    end)
end)
