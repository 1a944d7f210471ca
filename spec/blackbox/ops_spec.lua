-- Operations of the host: dev-mode reload on save, log reopening, config refusal, graceful stop,
-- timers told about a reload, the per-connection request limit.
local server = require "spec.support.server"
local http = require "spec.support.http"
local socket = require "socket"

local function app_answering(value)
    return ([[
local web = require "lib.web"
local host = require "host"
local app = web.new()
app:get("/healthz", function() return { json = { status = "ok" } } end)
app:get("/v", function() return { json = { v = %q } } end)
app:get("/sleep", function(req) host.sleep(tonumber(req:arg("s"))) return { json = { slept = true } } end)
app:init_worker(function()
    host.timer.every(60, function(premature)
        if premature then host.log("notice", "ticker stopped early, generation ", host.generation) end
    end)
end)
return app
]]):format(value)
end

local function get_v(s)
    local res = http.request{ port = s.port, path = "/v", timeout = 2 }
    return res and res.status == 200 and http.json(res).v
end

describe("ops", function()
    it("reloads on save in dev mode (single process and master + workers)", function()
        for _, workers in ipairs({ 0, 2 }) do
            local s = server.start{ app = app_answering("one"), conf = { dev = true, workers = workers } }
            finally(function() s:stop() end)
            assert.equal("one", get_v(s))
            local pid = s:pid()
            s:write_lua("app.lua", app_answering("two"))
            local changed = server.wait_until(function()
                for _ = 1, 4 do -- every worker
                    if get_v(s) ~= "two" then return false end
                end
                return true
            end, 5)
            assert.is_true(changed, "dev mode did not pick up the save")
            assert.equal(pid, s:pid())
            -- the timer of the old generation was told it ends early
            assert.matches("ticker stopped early, generation 1", s:error_log(), 1, true)
            s:stop()
            s:assert_no_errors()
        end
    end)

    it("writes one JSON access log line per request and reopens the logs on -s reopen", function()
        local s = server.start{ app = app_answering("x") }
        finally(function() s:stop() end)
        assert.equal("x", get_v(s))
        local log
        assert.is_true(server.wait_until(function()
            log = s:access_log()
            return log:find('"path":"/v"', 1, true) ~= nil
        end, 3), "no access log line for /v")
        local line = log:match('[^\n]*"path":"/v"[^\n]*')
        local entry = require("cjson").decode(line)
        assert.equal("GET", entry.method)
        assert.equal(200, entry.status)
        assert.is_number(entry.duration_us)
        assert.is_number(entry.bytes)
        assert.is_string(entry.request_id)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT", entry.time)

        assert(os.rename(s.dir .. "/access.log", s.dir .. "/access.log.1"))
        assert(os.rename(s.dir .. "/error.log", s.dir .. "/error.log.1"))
        local code, out = s:cli("-s reopen")
        assert.equal(0, code, out)
        assert.is_true(server.wait_until(function()
            get_v(s)
            local f = io.open(s.dir .. "/access.log")
            if not f then return false end
            local text = f:read("*a")
            f:close()
            return text:find('"path":"/v"', 1, true) ~= nil
        end, 3), "no fresh access.log after -s reopen")
        s:stop()
        s:assert_no_errors()
    end)

    it("closes a keep-alive connection after max_requests_per_conn requests", function()
        local s = server.start{ app = app_answering("x"), conf = { max_requests_per_conn = 2 } }
        finally(function() s:stop() end)
        local c = assert(http.connect(s.port, nil, 3))
        local r1 = assert(c:request{ path = "/v" })
        assert.equal("keep-alive", r1.headers["connection"])
        local r2 = assert(c:request{ path = "/v" })
        assert.equal(200, r2.status)
        assert.equal("close", r2.headers["connection"])
        assert.is_true((c:wait_closed(3)))
        c:close()
        s:stop()
        s:assert_no_errors()
    end)

    it("lets in-flight requests finish on QUIT, then exits", function()
        local s = server.start{ app = app_answering("x"), conf = { workers = 1 } }
        finally(function() s:stop() end)
        local c = assert(http.connect(s.port, nil, 5))
        assert(c:send_raw("GET /sleep?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n"))
        socket.sleep(0.15)
        local pid = s:pid()
        assert.is_true(s:signal("QUIT"))
        local res = assert(c:read_response())
        assert.equal(200, res.status)
        assert.is_true(http.json(res).slept)
        assert.equal("close", res.headers["connection"])
        assert.is_true(server.wait_until(function()
            return os.execute("kill -0 " .. pid .. " 2>/dev/null") ~= 0
        end, 5), "the master did not exit after QUIT")
        s:stop()
        s:assert_no_errors()
    end)
end)

describe("config", function()
    local function run(conf_src, env)
        local path = os.tmpname()
        local f = assert(io.open(path, "w"))
        f:write(conf_src)
        f:close()
        local rc, out = server.run({ "-c", path, "-t" }, env)
        os.remove(path)
        return rc, out
    end

    it("refuses an unknown key, naming it", function()
        local rc, out = run('return { listen = "127.0.0.1:1", wrokers = 2 }')
        assert.equal(1, rc)
        assert.matches('unknown key "wrokers"', out, 1, true)
    end)

    it("refuses a bad value, naming the key", function()
        local rc, out = run('return { workers = "many" }')
        assert.equal(1, rc)
        assert.matches("workers", out, 1, true)
        rc, out = run('return { max_body = -1 }')
        assert.equal(1, rc)
        assert.matches("max_body must be between", out, 1, true)
    end)

    it("takes FCFS_<KEY> from the environment over the file, and refuses a bad one", function()
        local rc, out = run('return { lua_dir = "lua" }', { FCFS_LUA_DIR = "/nonexistent" })
        assert.equal(1, rc)
        assert.matches("/nonexistent", out, 1, true)
        rc, out = run('return { lua_dir = "lua" }', { FCFS_HEADER_TIMEOUT = "soon" })
        assert.equal(1, rc)
        assert.matches("FCFS_HEADER_TIMEOUT", out, 1, true)
    end)
end)
