-- Black-box specs of the C host core: the real binary ($FCFS_BIN, default build/fcfs) with a
-- temporary config and a test app, spoken to over real sockets. They cover the HTTP/1.1 server
-- (keep-alive, pipelining, every limit and timeout, HEAD, Expect, Connection: close), the Lua side
-- (errors, strict globals, deadlines, host I/O at require time, cancellation, concurrency) and the
-- process side (worker restart after kill -9 or a runaway loop, reload by signal and by HTTP,
-- metrics summed over workers). Every spec ends by checking the error log for [error] lines it did
-- not provoke itself.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/host_spec.lua
local socket = require "socket"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local shell = require "spec.support.shell"
local alive = shell.alive

local format = string.format

-- The repository's app.lua (the operational routes: /healthz, /metrics, /_host/reload,
-- /_host/status) becomes the module `hostspec_base` of the test app, which adds its own routes.
local BASE_APP = server.repo_file("lua/app.lua")

local function app_source(version)
    return format([==[
local app = require "hostspec_base"
local host = require "host"
local web = require "lib.web"
local tonumber = tonumber
local VERSION = %q

app:get("/version", function()
    return { json = { v = VERSION, pid = host.pid, worker = host.worker_id, generation = host.generation } }
end)

app:get("/sleep", function(req)
    local s = tonumber(req:arg("s")) or 0.2
    host.sleep(s)
    local mark = req:arg("mark")
    if mark then host.log("warn", "woke ", mark) end
    return { json = { slept = s, tag = req:arg("tag") } }
end)

app:get("/tag", function(req) return { json = { tag = req:arg("tag") } } end)

app:post("/echo", function(req)
    local body = req.body or ""
    return { json = { len = #body, body = body, tag = req:arg("tag") } }
end)

app:get("/boom", function() error("boom-marker-7f3a") end)

app:get("/global", function()
    leaked_global = 1
    return { json = { ok = true } }
end)

app:get("/spin", function()
    while true do end
end)

-- Raises after host I/O: the task's coroutine was resumed by the host before the raise.
app:get("/fail-after-io", function()
    host.sleep(0.001)
    web.fail(409, "TAKEN_X", { ko = "이미 있음", en = "taken" }, { n = 1 })
end)

app:get("/boom-after-io", function()
    host.sleep(0.001)
    error("late-boom-marker-e41c")
end)

-- A user coroutine doing host I/O, its values and the handler's multiple returns carried through.
app:get("/co", function(req)
    local gen = coroutine.wrap(function(a)
        host.sleep(0.001)
        local b = coroutine.yield(a + 1, "two")
        host.sleep(0.001)
        return b * 2
    end)
    local x, y = gen(tonumber(req:arg("a")) or 1)
    local z = gen(10)
    return { json = { x = x, y = y, z = z } }
end)

-- host.header(req, name) against req.headers[name], asked before req.headers is built (the FFI
-- lookup), then after it (the table), and for tables the host did not make.
local HEADER_NAMES = { "x-one", "x-twice", "x-absent", "X-One", "", string.rep("n", 127), string.rep("n", 200) }
app:get("/header", function(req)
    local got, want = {}, {}
    for i, name in ipairs(HEADER_NAMES) do got[i] = host.header(req, name) or "(nil)" end
    for i, name in ipairs(HEADER_NAMES) do want[i] = req.headers[name] or "(nil)" end
    return { json = { got = got, want = want, built = host.header(req, "x-one"),
        plain = host.header({ headers = { ["x-one"] = "mine" } }, "x-one") or "(nil)",
        bare = host.header({}, "x-one") or "(nil)" } }
end)

-- host.header of a request asked from a timer (no request running): what req.headers gives there.
app:get("/header-later", function(req)
    local later
    host.timer.at(0, function() later = host.header(req, "x-one") or "(nil)" end)
    while later == nil do host.sleep(0.005) end
    return { json = { later = later } }
end)

-- The request table as a handler sees it (made by the host's entry function): its own fields by
-- pairs, its host fields on first use; one is kept past its request and read by a later one.
local kept
app:match({ "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }, "/reqtable/:n[%%d]", function(req)
    local keys = {}
    for k, v in pairs(req) do keys[#keys + 1] = k .. ":" .. type(v) end
    table.sort(keys)
    local before = kept
    kept = req
    return { json = { keys = table.concat(keys, " "), method = req.method, path = req.path,
        body = req.body or "(nil)", query = req.query, id = req.request_id, n = req.params.n,
        mt = getmetatable(req) ~= nil,
        before = before and (before.method .. " " .. before.path .. " " .. (before.body or "(nil)")) or "(nil)" } }
end)

return app
]==], version)
end

local function start(conf, version)
    local c = {
        redis = "127.0.0.1:" .. raw.free_port(), -- nothing listens there: no Redis needed
        drain_timeout = 1,
    }
    for k, v in pairs(conf) do
        c[k] = v
    end
    return server.start{
        app = app_source(version or "A"),
        lua_files = { ["hostspec_base.lua"] = BASE_APP },
        conf = c,
    }
end

-- User CPU time of a process in clock ticks, or nil once it is gone.
local function utime(pid)
    local stat = shell.read_file("/proc/" .. pid .. "/stat")
    if not stat then
        return nil
    end
    local rest = stat:match("^%d+ %b() (.*)$")
    local fields = {}
    for w in rest:gmatch("%S+") do
        fields[#fields + 1] = w
    end
    return tonumber(fields[12]) -- field 14 of stat; fields here start at field 3
end

local function contains(list, x)
    for _, v in ipairs(list) do
        if v == x then
            return true
        end
    end
    return false
end

local function get_json(port, path, timeout)
    local res = assert(http.request{ port = port, path = path, timeout = timeout or 5 })
    assert.equal(200, res.status, path .. ": " .. tostring(res.body))
    return http.json(res), res
end

-- An error answer of the host or the app: JSON {"error":{code, message}, "request_id"} whose id
-- is the one in X-Request-Id.
local function assert_error_body(res, status, code)
    assert.equal(status, res.status, tostring(res.body))
    assert.matches("^application/json", res.headers["content-type"] or "")
    local body = http.json(res)
    assert.is_table(body.error)
    assert.equal(code, body.error.code)
    assert.is_string(body.error.message)
    assert.is_string(body.request_id)
    assert.is_true(#body.request_id > 0)
    assert.equal(res.headers["x-request-id"], body.request_id)
    return body
end

-- Send bytes on a fresh connection; the answer must be the error `status`/`code`, and the server
-- must close the connection after it.
local function expect_error_and_close(port, bytes, status, code)
    local c = assert(http.connect(port, nil, 5))
    assert(c:send_raw(bytes))
    local res, err = c:read_response()
    assert(res, "no response: " .. tostring(err))
    assert_error_body(res, status, code)
    assert.equal("close", (res.headers.connection or ""):lower())
    assert.is_true((c:wait_closed(5)), "the server kept the connection open after " .. status)
    c:close()
    return res
end

local function version_on(c)
    local res = assert(c:request{ path = "/version" })
    assert.equal(200, res.status)
    return http.json(res)
end

-- Poll (every 20 ms) until fn() is true; fails the spec after timeout seconds.
local function eventually(fn, timeout, what)
    return server.wait_until(fn, timeout or 5, what or "a condition")
end

---------------------------------------------------------------------------------------------------

describe("host core, one worker", function()
    local s
    -- [error] lines the specs of this block provoke on purpose (markers unique to them)
    local ALLOWED = { "boom%-marker%-7f3a", "assignment to undeclared global 'leaked_global'" }

    setup(function()
        s = start{
            workers = 1,
            max_body = 1024,
            max_url = 256,
            max_header_size = 1024,
            max_headers = 10,
            header_timeout = 0.5,
            body_timeout = 0.5,
            request_timeout = 5,
            idle_timeout = 10,
        }
    end)

    teardown(function()
        if s then
            s:stop()
        end
    end)

    it("serves several requests on one keep-alive connection (same socket)", function()
        local c = assert(http.connect(s.port))
        local _, port0 = c.sock:getsockname()
        for i = 1, 5 do
            local res = assert(c:request{ path = "/tag?tag=" .. i })
            assert.equal(200, res.status)
            assert.equal("keep-alive", (res.headers.connection or ""):lower())
            assert.is_true(res.keep_alive)
            assert.same({ tag = tostring(i) }, http.json(res))
            local _, port = c.sock:getsockname()
            assert.equal(port0, port)
        end
        c:close()
        s:assert_no_errors(ALLOWED)
    end)

    describe("answers every limit with a JSON error and closes the connection", function()
        it("413 for a body over max_body", function()
            expect_error_and_close(s.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
                .. ("b"):rep(2000), 413, "PAYLOAD_TOO_LARGE")
        end)

        it("413 for a chunked body growing over max_body", function()
            local chunk = ("c"):rep(600)
            expect_error_and_close(s.port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                .. format("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", #chunk, chunk, #chunk, chunk), 413,
                "PAYLOAD_TOO_LARGE")
        end)

        it("414 for a URL over max_url", function()
            expect_error_and_close(s.port, "GET /" .. ("u"):rep(300) .. " HTTP/1.1\r\nHost: x\r\n\r\n", 414,
                "URI_TOO_LONG")
        end)

        it("431 for headers over max_header_size", function()
            expect_error_and_close(s.port, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("h"):rep(1100)
                .. "\r\n\r\n", 431, "HEADERS_TOO_LARGE")
        end)

        it("431 for more headers than max_headers", function()
            local lines = { "GET /hello HTTP/1.1", "Host: x" }
            for i = 1, 11 do
                lines[#lines + 1] = "X-H" .. i .. ": v"
            end
            expect_error_and_close(s.port, table.concat(lines, "\r\n") .. "\r\n\r\n", 431, "HEADERS_TOO_LARGE")
        end)

        it("501 for Transfer-Encoding: gzip", function()
            expect_error_and_close(s.port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                501, "NOT_IMPLEMENTED")
        end)

        it("400 for Content-Length together with Transfer-Encoding", function()
            expect_error_and_close(s.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "BAD_REQUEST")
        end)

        it("400 for a malformed request line", function()
            expect_error_and_close(s.port, "this is not http\r\n\r\n", 400, "BAD_REQUEST")
        end)

        it("and stays healthy, logging no error for any of them", function()
            get_json(s.port, "/hello")
            s:assert_no_errors(ALLOWED)
        end)
    end)

    it("answers host.header(req, name) as req.headers[name] is answered, without building it", function()
        local c = assert(http.connect(s.port))
        assert(c:send_raw("GET /header HTTP/1.1\r\nHost: x\r\nX-One: first\r\nX-Twice: a\r\nx-twice: b\r\n"
            .. string.rep("N", 200) .. ": long\r\n\r\n"))
        local res = assert(c:read_response())
        assert.equal(200, res.status)
        local b = http.json(res)
        -- req_index cuts names to 127 bytes: the 200-byte name is found under its first 127
        assert.same({ "first", "a, b", "(nil)", "(nil)", "(nil)", "long", "(nil)" }, b.got)
        assert.same(b.want, b.got)
        assert.equal("first", b.built)
        assert.equal("mine", b.plain)
        assert.equal("(nil)", b.bare)
        res = assert(c:request{ path = "/header-later", headers = { ["X-One"] = "first" } })
        assert.equal(200, res.status)
        assert.same({ later = "(nil)" }, http.json(res))
        c:close()
        s:assert_no_errors()
    end)

    it("answers 408 to a client too slow with its headers, and to a body that never completes", function()
        for _, case in ipairs{
            { what = "headers", bytes = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Half: " },
            { what = "body", bytes = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part" },
        } do
            local c = assert(http.connect(s.port, nil, 5))
            local t0 = socket.gettime()
            assert(c:send_raw(case.bytes))
            local res, err = c:read_response()
            local waited = socket.gettime() - t0
            assert(res, case.what .. ": no response: " .. tostring(err))
            assert_error_body(res, 408, "REQUEST_TIMEOUT")
            assert.equal("close", (res.headers.connection or ""):lower())
            assert.is_true(waited >= 0.4, case.what .. ": 408 after only " .. waited .. " s")
            assert.is_true(waited < 3, case.what .. ": 408 only after " .. waited .. " s")
            assert.is_true((c:wait_closed(5)))
            c:close()
        end
        s:assert_no_errors(ALLOWED)
    end)

    it("turns a Lua error into a logged JSON 500 and keeps the worker serving", function()
        local c = assert(http.connect(s.port))
        local before = http.json(assert(c:request{ path = "/version" }))
        local res = assert(c:request{ path = "/boom" })
        local body = assert_error_body(res, 500, "INTERNAL")
        local id = body.request_id
        -- one log record: the request id, the message, the traceback, the request line
        local record = eventually(function()
            return s:error_log():match("%[error%] %d+#%d+ %*" .. id:gsub("%p", "%%%0") .. " [^\n]*boom%-marker%-7f3a"
                .. ".-\n[^%[]*stack traceback:.-request: \"GET /boom HTTP/1%.1\"")
        end, 5, "the error record of request " .. id)
        assert.matches("app%.lua:%d+", record)
        -- the next request, on the same connection and worker, works
        local ok = assert(c:request{ path = "/hello" })
        assert.equal(200, ok.status)
        assert.same({ ok = true }, http.json(ok))
        local after = http.json(assert(c:request{ path = "/version" }))
        assert.equal(before.pid, after.pid)
        c:close()
        s:assert_no_errors(ALLOWED)
    end)

    it("refuses a handler's global assignment (strict globals): 500 and a clear log line", function()
        local c = assert(http.connect(s.port))
        local res = assert(c:request{ path = "/global" })
        local body = assert_error_body(res, 500, "INTERNAL")
        eventually(function()
            return s:error_log():find("%*" .. body.request_id:gsub("%p", "%%%0")
                .. " [^\n]*assignment to undeclared global 'leaked_global'")
        end, 5, "the strict-globals error in the log")
        local ok = assert(c:request{ path = "/hello" })
        assert.equal(200, ok.status)
        c:close()
        s:assert_no_errors(ALLOWED)
    end)

    it("runs 100 concurrent sleeping requests on one worker in about the time of one", function()
        local results, elapsed = raw.fanout{
            port = s.port,
            n = 100,
            request = "GET /sleep?s=0.2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            timeout = 10,
        }
        local ok = 0
        for i = 1, 100 do
            local r = results[i]
            assert(r and r.status, "request " .. i .. ": " .. tostring(r and r.err))
            assert.equal(200, r.status, r.body)
            assert.matches('"slept":0%.2', r.body)
            ok = ok + 1
        end
        assert.equal(100, ok)
        assert.is_true(elapsed >= 0.2, "finished in " .. elapsed .. " s, before the sleep could end")
        assert.is_true(elapsed <= 0.5, "100 x sleep(0.2) took " .. elapsed .. " s (serialised?)")
        s:assert_no_errors(ALLOWED)
    end)

    it("answers HEAD without a body, Expect: 100-continue with 100 first, and honours Connection: close",
        function()
            local c = assert(http.connect(s.port))
            local get = assert(c:request{ path = "/hello" })
            local head = assert(c:request{ method = "HEAD", path = "/hello" })
            assert.equal(200, head.status)
            assert.equal(get.headers["content-length"], head.headers["content-length"])
            assert.is_true(tonumber(head.headers["content-length"]) > 0)
            -- nothing follows the head: the next read times out with no byte
            c:settimeout(0.3)
            local data, err, partial = c.sock:receive(1)
            assert.is_nil(data)
            assert.equal("timeout", err)
            assert.equal("", partial)
            c:settimeout(5)
            -- and the connection goes on
            assert.equal(200, assert(c:request{ path = "/hello" }).status)

            -- Expect: 100-continue: the interim answer comes before the body is sent
            assert(c:send_raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
            local cont = assert(c:read_response())
            assert.equal(100, cont.status)
            assert(c:send_raw("12345"))
            local res = assert(c:read_response())
            assert.equal(200, res.status)
            assert.same(5, http.json(res).len)

            -- Connection: close: the answer says so and the server closes
            local last = assert(c:request{ path = "/hello", headers = { Connection = "close" } })
            assert.equal(200, last.status)
            assert.equal("close", (last.headers.connection or ""):lower())
            assert.is_true((c:wait_closed(5)))
            c:close()
            s:assert_no_errors(ALLOWED)
        end)

    it("lets the handler of a client that goes away run to its end (client_abort = finish)", function()
        local pid = get_json(s.port, "/version").pid
        local tag = tostring(os.time()) .. tostring(math.random(1e6))
        local c = assert(http.connect(s.port))
        assert(c:send_raw("GET /sleep?s=0.5&mark=first-" .. tag .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
        -- in flight: the sleeping request plus the /metrics request that looks
        eventually(function()
            return (raw.metric(s:metrics(), "fcfs_requests_in_flight") or 0) >= 2
        end, 5, "the sleeping request to be in flight")
        c:close()
        eventually(function()
            return raw.metric(s:metrics(), "fcfs_requests_in_flight") == 1 -- only /metrics itself
        end, 5, "the in-flight gauge to drop back")
        -- the first handler woke and finished although nobody waits for its answer
        assert.truthy(s:error_log():find("woke first-" .. tag, 1, true), "the handler was cancelled")
        assert.equal(pid, get_json(s.port, "/version").pid) -- same worker, no crash
        s:assert_no_errors(ALLOWED)
    end)

    it("refuses host I/O at require time: fcfs -t exits 1 naming the problem", function()
        local dir = s.dir .. "/badlua"
        assert(os.execute("mkdir -p '" .. dir .. "'"))
        local f = assert(io.open(dir .. "/app.lua", "wb"))
        f:write('local host = require "host"\nhost.sleep(0)\nreturn { handle = function() return 200 end }\n')
        f:close()
        local code, out = s:cli("-t") -- the good app passes
        assert.equal(0, code, out)
        -- the same config with the bad Lua directory (FCFS_<KEY> overrides the file)
        code, out = s:cli("-t", { FCFS_LUA_DIR = dir })
        assert.equal(1, code, out)
        assert.matches("not allowed while modules load", out, 1, true)
        assert.matches("host.sleep", out, 1, true)
        assert.matches("app.lua:2", out, 1, true)
        s:assert_no_errors(ALLOWED)
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors(ALLOWED)
    end)
end)

-- The request path runs in the app's serve method with no xpcall frame under it (raises are answered
-- by its handle_error): what a reused coroutine answers after raises, I/O and user coroutines, and
-- that LuaJIT compiles the path instead of aborting its traces (jit.v, through FCFS_LUA_INIT).
describe("host core, the request coroutine", function()
    local s, jit_log, init

    setup(function()
        jit_log, init = os.tmpname(), os.tmpname()
        local f = assert(io.open(init, "w"))
        f:write(format("require('jit.v').start(%q)\n", jit_log))
        f:close()
        s = server.start{
            app = app_source("A"),
            lua_files = { ["hostspec_base.lua"] = BASE_APP },
            conf = { workers = 1, redis = "127.0.0.1:" .. raw.free_port() },
            env = { FCFS_LUA_INIT = init },
        }
    end)

    teardown(function()
        if s then s:stop() end
        os.remove(jit_log)
        os.remove(init)
    end)

    it("answers raises, web.fail after I/O and user coroutines right on reused coroutines", function()
        local c = assert(http.connect(s.port))
        for i = 1, 300 do
            local res = assert(c:request{ path = "/hello" })
            assert.equal(200, res.status)
            res = assert(c:request{ path = "/fail-after-io" })
            local body = assert_error_body(res, 409, "TAKEN_X")
            assert.equal("이미 있음", body.error.message)
            assert.same({ n = 1 }, body.error.details)
            res = assert(c:request{ path = "/co?a=" .. i })
            assert.equal(200, res.status, res.body)
            assert.same({ x = i + 1, y = "two", z = 20 }, http.json(res))
            res = assert(c:request{ path = "/nope", headers = { ["Accept-Language"] = "en" } })
            body = assert_error_body(res, 404, "NOT_FOUND")
            assert.equal("The requested resource was not found.", body.error.message)
            if i % 100 == 0 then
                res = assert(c:request{ path = "/boom-after-io" })
                assert_error_body(res, 500, "INTERNAL")
            end
        end
        c:close()
        -- the late raises were logged with their traceback
        local log = s:error_log()
        local n = 0
        for _ in log:gmatch("late%-boom%-marker%-e41c[^\n]*\n[^%[]*stack traceback:") do n = n + 1 end
        assert.equal(3, n, log)
    end)

    it("gives handlers request tables with their method, path and body only, whichever the method", function()
        local c = assert(http.connect(s.port))
        local methods = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }
        local last
        for i = 1, 120 do -- past the JIT's hot counts: the entry function compiled
            local m = methods[i % #methods + 1]
            local body = (m == "POST" or m == "PUT") and ("b" .. i) or nil
            local res = assert(c:request{ method = m, path = "/reqtable/" .. i .. "?q=" .. i, body = body,
                headers = { ["X-Request-Id"] = "rq-" .. i } })
            assert.equal(200, res.status, res.body)
            local got = http.json(res)
            assert.equal(m, got.method)
            assert.equal("/reqtable/" .. i, got.path)
            assert.equal(body or "(nil)", got.body)
            assert.equal(body and "body:string method:string params:table path:string route:string"
                or "method:string params:table path:string route:string", got.keys)
            assert.equal("q=" .. i, got.query)
            assert.equal("rq-" .. i, got.id)
            assert.equal(tostring(i), got.n)
            assert.is_true(got.mt)
            -- the table kept by the previous request still holds its own fields
            assert.equal(last or "(nil)", got.before)
            last = m .. " /reqtable/" .. i .. " " .. (body or "(nil)")
        end
        c:close()
    end)

    it("keeps the request path compiled: no trace returns into an xpcall frame", function()
        if os.getenv("FCFS_LUA_COVERAGE") then return end -- the coverage hook runs without the JIT
        local f = assert(io.open(jit_log))
        local log = f:read("*a")
        f:close()
        assert.matches("TRACE", log)
        assert.is_nil(log:find("return to lower frame", 1, true), log)
    end)

    it("logs no unexpected error, through shutdown", function()
        s:stop()
        s:assert_no_errors{ "late%-boom%-marker%-e41c" }
    end)
end)

-- Pipelining gets servers of its own: a server that fails it may crash its worker, and that must
-- not spill into the other specs.
describe("host core, pipelining", function()
    local function pipeline(bytes, n)
        local s = start{ workers = 1 }
        finally(function()
            s:stop()
        end)
        local c = assert(http.connect(s.port, nil, 3))
        assert(c:send_raw(bytes))
        local ids = {}
        for i = 1, n do
            local res, err = c:read_response()
            assert(res, "response " .. i .. " of " .. n .. ": " .. tostring(err))
            assert.equal(200, res.status)
            local body = http.json(res)
            assert.equal(tostring(i), body.tag, "response " .. i .. " answers request " .. tostring(body.tag))
            if body.body then
                assert.equal("hello world", body.body)
            end
            assert.is_nil(ids[res.headers["x-request-id"]])
            ids[res.headers["x-request-id"]] = true
        end
        assert.is_true((c:wait_closed(3)), "no close after the Connection: close request")
        c:close()
        s:stop()
        s:assert_no_errors()
    end

    it("answers 4 pipelined requests whose handlers answer at once, complete and in order", function()
        pipeline("GET /tag?tag=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            .. "POST /echo?tag=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
            .. "GET /tag?tag=3 HTTP/1.1\r\nHost: x\r\n\r\n"
            .. "GET /tag?tag=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 4)
    end)

    it("answers 4 pipelined requests in order when the first one is the slowest", function()
        -- answers in completion order would put the first last
        pipeline("GET /sleep?s=0.15&tag=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            .. "POST /echo?tag=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
            .. "GET /tag?tag=3 HTTP/1.1\r\nHost: x\r\n\r\n"
            .. "GET /tag?tag=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 4)
    end)
end)

describe("host core, request deadline", function()
    it("answers 504 JSON when a handler outlives request_timeout, then serves the next request", function()
        local s = start{ workers = 1, request_timeout = 0.3 }
        finally(function()
            s:stop()
        end)
        local c = assert(http.connect(s.port))
        local t0 = socket.gettime()
        local res = assert(c:request{ path = "/sleep?s=2" })
        local took = socket.gettime() - t0
        assert_error_body(res, 504, "TIMEOUT")
        assert.is_true(took >= 0.25 and took < 1.5, "504 after " .. took .. " s")
        if not res.keep_alive then
            c:close()
            c = assert(http.connect(s.port))
        end
        local ok = assert(c:request{ path = "/hello" })
        assert.equal(200, ok.status)
        assert.same({ ok = true }, http.json(ok))
        c:close()
        assert.matches("request deadline of 0%.3s passed", s:error_log())
        s:stop()
        s:assert_no_errors{ "request deadline of 0%.3s passed" }
    end)
end)

describe("host core, two workers", function()
    it("restarts a worker killed with SIGKILL within a second, and keeps serving", function()
        local s = start{ workers = 2 }
        finally(function()
            s:stop()
        end)
        local before = s:worker_pids()
        assert.equal(2, #before)
        local victim = before[1]
        assert(os.execute("kill -9 " .. victim))
        local t0 = socket.gettime()
        local now = eventually(function()
            local pids = s:worker_pids()
            return #pids == 2 and not contains(pids, victim) and pids
        end, 5, "a new worker pid")
        local took = socket.gettime() - t0
        assert.is_true(took <= 1.0, "the new worker came after " .. took .. " s")
        local fresh
        for _, p in ipairs(now) do
            if not contains(before, p) then
                fresh = p
            end
        end
        assert.is_number(fresh)
        -- every request is served, and the new worker answers some
        eventually(function()
            return get_json(s.port, "/version").pid == fresh
        end, 10, "the new worker to answer")
        assert.equal(1, raw.metric(s:metrics(), "fcfs_worker_restarts_total"))
        s:stop()
        s:assert_no_errors{ "%(pid " .. victim .. "%) killed by signal 9" }
    end)

    it("pins each worker's loop to its own CPU with worker_cpu_affinity = \"auto\", a restarted one too",
        function()
        -- Cpus_allowed_list of a process or thread ("0-1", "0,2-3") as the list of its CPUs
        local function cpus(status_path)
            local text = assert(shell.read_file(status_path))
            local list = {}
            for item in assert(text:match("Cpus_allowed_list:%s*(%S+)")):gmatch("[^,]+") do
                local lo, hi = item:match("^(%d+)%-(%d+)$")
                for c = tonumber(lo or item), tonumber(hi or item) do
                    list[#list + 1] = c
                end
            end
            return list
        end
        local mine = cpus("/proc/self/status")
        local s = start{ workers = 2, worker_cpu_affinity = "auto" }
        finally(function()
            s:stop()
        end)
        -- worker i runs on the i-th CPU the node may use (around again past the last)
        local function expect_pinned(pid)
            local id = assert(tonumber(s:error_log():match(pid .. "#(%d+) worker %d+ runs on CPU")),
                "no pinning logged for " .. pid)
            assert.same({ mine[id % #mine + 1] }, cpus("/proc/" .. pid .. "/status"))
            local helpers = 0
            for tid in assert(io.popen("ls /proc/" .. pid .. "/task")):lines() do
                if tid ~= tostring(pid) then -- libuv's pool: every CPU of the node
                    assert.same(mine, cpus("/proc/" .. pid .. "/task/" .. tid .. "/status"))
                    helpers = helpers + 1
                end
            end
            assert.is_true(helpers > 0, "no pool thread in worker " .. pid)
            return id
        end
        local before = s:worker_pids()
        assert.equal(2, #before)
        local ids = { expect_pinned(before[1]), expect_pinned(before[2]) }
        table.sort(ids)
        assert.same({ 0, 1 }, ids)
        local victim = before[1]
        local victim_cpus = cpus("/proc/" .. victim .. "/status")
        assert(os.execute("kill -9 " .. victim))
        local fresh = eventually(function()
            for _, p in ipairs(s:worker_pids()) do
                if not contains(before, p) and s:error_log():match(p .. "#%d+ worker %d+ runs on CPU") then
                    return p
                end
            end
        end, 5, "a new, pinned worker")
        expect_pinned(fresh)
        assert.same(victim_cpus, cpus("/proc/" .. fresh .. "/status"))
        s:stop()
        s:assert_no_errors{ "%(pid " .. victim .. "%) killed by signal 9" }
    end)

    it("replaces a worker stuck in a runaway loop and keeps serving on the other meanwhile", function()
        local s = start{ workers = 2, heartbeat_timeout = 1 }
        finally(function()
            s:stop()
        end)
        local before = s:worker_pids()
        assert.equal(2, #before)
        local cpu0 = { utime(before[1]), utime(before[2]) }
        local spin = assert(http.connect(s.port))
        assert(spin:send_raw("GET /spin HTTP/1.1\r\nHost: x\r\n\r\n"))
        -- the stuck worker is the one burning CPU (10 ticks = 0.1 s at USER_HZ 100)
        local stuck = eventually(function()
            for i = 1, 2 do
                local t = utime(before[i])
                if t and t - cpu0[i] >= 10 then
                    return before[i]
                end
            end
        end, 5, "a worker to spin")
        local other = stuck == before[1] and before[2] or before[1]
        local meanwhile = 0
        eventually(function()
            local st = get_json(s.port, "/version", 2)
            assert.are_not.equal(stuck, st.pid)
            if alive(stuck) then
                meanwhile = meanwhile + 1
            end
            local pids = s:worker_pids()
            return not alive(stuck) and #pids == 2 and contains(pids, other)
        end, 10, "the stuck worker to be replaced")
        assert.is_true(meanwhile >= 1, "no request was served while a worker was stuck")
        local res = spin:read_response()
        assert.is_nil(res) -- its connection died with the worker
        spin:close()
        local fresh
        for _, p in ipairs(s:worker_pids()) do
            if not contains(before, p) then
                fresh = p
            end
        end
        assert.is_number(fresh)
        eventually(function()
            return get_json(s.port, "/version").pid == fresh
        end, 10, "the new worker to answer")
        assert.matches("worker %d %(pid " .. stuck .. "%) missed its heartbeat", s:error_log())
        s:stop()
        s:assert_no_errors{ "%(pid " .. stuck .. "%) missed its heartbeat" }
    end)

    it("keeps the running code when a reload meets a syntax error (-s reload and POST /_host/reload)",
        function()
            local s = start({ workers = 2 }, "A")
            finally(function()
                s:stop()
            end)
            local conns = s:conn_per_worker(2)
            local gen = version_on(conns[0]).generation
            s:write_lua("app.lua", "local x = = 1\n" .. app_source("B"))
            local code, out = s:cli("-s reload")
            assert.are_not.equal(0, code, out)
            assert.matches("reload refused", out, 1, true)
            assert.matches("app.lua:1:", out, 1, true)
            for id = 0, 1 do
                local v = version_on(conns[id])
                assert.equal("A", v.v)
                assert.equal(gen, v.generation)
            end

            local res = assert(s:admin{ method = "POST", path = "/_host/reload" })
            local body = http.json(res)
            assert.is_false(body.ok)
            assert.is_string(body.error)
            assert.matches("app.lua:1:", body.error, 1, true)
            assert.equal(500, res.status)
            -- the master refused it for every worker at the first error (a worker that had not
            -- started loading it never does), and every worker still runs "A"
            eventually(function()
                return s:error_log():find("#master reload failed: generation %d+ refused")
            end, 5, "the master to refuse the reload")
            for id = 0, 1 do
                local v = version_on(conns[id])
                assert.equal("A", v.v)
                assert.equal(gen, v.generation)
                conns[id]:close()
            end
            assert.equal("A", get_json(s.port, "/version").v)
            s:stop()
            s:assert_no_errors{ "reload failed" }
        end)

    it("reloads new code on every worker without a new master (-s reload, then POST /_host/reload)",
        function()
            local s = start({ workers = 2 }, "A")
            finally(function()
                s:stop()
            end)
            local master = s:pid()
            local workers = s:worker_pids()
            local conns = s:conn_per_worker(2)
            local gen = {}
            for id = 0, 1 do
                local v = version_on(conns[id])
                assert.equal("A", v.v)
                gen[id] = v.generation
            end

            for _, step in ipairs{ { v = "B", how = "signal" }, { v = "C", how = "http" } } do
                s:write_lua("app.lua", app_source(step.v))
                if step.how == "signal" then
                    local code, out = s:cli("-s reload")
                    assert.equal(0, code, out)
                else
                    local res = assert(s:admin{ method = "POST", path = "/_host/reload" })
                    assert.equal(200, res.status, res.body)
                    local body = http.json(res)
                    assert.is_true(body.ok)
                    assert.is_number(body.generation)
                end
                -- each worker, on its own keep-alive connection, moves to the new code
                for id = 0, 1 do
                    local v = eventually(function()
                        local v = version_on(conns[id])
                        return v.v == step.v and v
                    end, 5, format("worker %d to answer %s after the %s reload", id, step.v, step.how))
                    assert.is_true(v.generation > gen[id])
                    gen[id] = v.generation
                end
                assert.equal(master, s:pid())
                assert.same(workers, s:worker_pids()) -- reloaded in place, not restarted
            end
            for id = 0, 1 do
                conns[id]:close()
            end
            assert.equal(2, raw.metric(s:metrics(), "fcfs_workers"))
            s:stop()
            s:assert_no_errors()
        end)

    it("counts requests in /metrics summed over both workers, with each worker's generation", function()
        local s = start{ workers = 2 }
        finally(function()
            s:stop()
        end)
        local sample = 'fcfs_requests_total{route="/hello",status="200"}'
        local base = raw.metric(s:metrics(), sample) or 0
        local conns = s:conn_per_worker(2)
        local sent = { [0] = 3, [1] = 4 }
        for id = 0, 1 do
            for _ = 1, sent[id] do
                local res = assert(conns[id]:request{ path = "/hello" })
                assert.equal(200, res.status)
            end
            conns[id]:close()
        end
        local text = s:metrics()
        assert.equal(base + 7, raw.metric(text, sample))
        assert.equal(2, raw.metric(text, "fcfs_workers"))
        for id = 0, 1 do
            local g = raw.metric(text, format('fcfs_vm_generation{worker="%d"}', id))
            assert.is_number(g)
            assert.is_true(g >= 1)
        end
        s:stop()
        s:assert_no_errors()
    end)
end)
