-- Black-box specs of the admin listener and of client addresses behind proxies: the real binary
-- ($FCFS_BIN, default build/fcfs) with a test app, spoken to over its public TCP port and its admin
-- socket. Covered: /_host/* and /metrics answer on the admin listener only (the public listener
-- answers 404 even from loopback, even for a /_host/ route the app registers itself), reload and
-- status over the admin unix socket and over a loopback admin port, refusal of a non-loopback
-- admin_listen, and real_ip_from / real_ip_header (trusted peer, untrusted peer, chains of
-- proxies, junk).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/admin_spec.lua
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local shell = require "spec.support.shell"

local format = string.format

local BASE_APP = server.repo_file("lua/app.lua")

local APP = [==[
local app = require "adminspec_base"
app:get("/ip", function(req)
    return { json = { remote_addr = req.remote_addr, admin = req.admin or false } }
end)
-- Registered without admin_only: the host itself keeps it off the public listener.
app:get("/_host/app-route", function(req) return { json = { admin = req.admin or false } } end)
return app
]==]

local function start(conf)
    local c = { redis = "127.0.0.1:" .. raw.free_port() } -- nothing listens there: no Redis needed
    for k, v in pairs(conf or {}) do
        c[k] = v
    end
    return server.start{ app = APP, lua_files = { ["adminspec_base.lua"] = BASE_APP }, conf = c }
end

local function assert_not_found(res, what)
    assert.equal(404, res.status, what .. ": " .. tostring(res.body))
    local body = http.json(res)
    assert.equal("NOT_FOUND", body.error.code, what)
    assert.equal(res.headers["x-request-id"], body.request_id, what)
end

describe("admin listener", function()
    local s

    setup(function()
        s = start{ workers = 2 }
    end)

    teardown(function()
        s:stop()
    end)

    it("answers /_host/* and /metrics on the public listener with 404, even from loopback", function()
        local cases = {
            { "POST", "/_host/reload" }, { "GET", "/_host/status" }, { "GET", "/_host/app-route" },
            { "GET", "/_host" }, { "GET", "/_host/" }, { "GET", "/_host/no/such" }, { "GET", "/metrics" },
            { "GET", "/_host/status?x=1" },
        }
        local gen = http.json(assert(s:admin{ path = "/_host/status" })).generation
        for _, c in ipairs(cases) do
            local res = assert(http.request{ port = s.port, method = c[1], path = c[2] })
            assert_not_found(res, c[1] .. " " .. c[2])
        end
        -- the public POST /_host/reload reloaded nothing
        assert.equal(gen, http.json(assert(s:admin{ path = "/_host/status" })).generation)
        -- a path that merely starts with the same letters is the app's business (here: no route)
        local res = assert(http.request{ port = s.port, path = "/_hostile" })
        assert_not_found(res, "/_hostile")
    end)

    it("serves /_host/status, /metrics and the app's own /_host/ route on the admin socket", function()
        local res = assert(s:admin{ path = "/_host/status" })
        assert.equal(200, res.status, res.body)
        local st = http.json(res)
        assert.equal(2, st.worker_count)
        assert.is_number(st.generation)
        res = assert(s:admin{ path = "/metrics" })
        assert.equal(200, res.status)
        assert.matches("^text/plain", res.headers["content-type"])
        assert.equal(2, raw.metric(res.body, "fcfs_workers"))
        res = assert(s:admin{ path = "/_host/app-route" })
        assert.equal(200, res.status)
        assert.is_true(http.json(res).admin)
        -- the app's routes are there too, and know where they were asked
        res = assert(s:admin{ path = "/ip" })
        assert.same({ remote_addr = "unix", admin = true }, http.json(res))
        res = assert(http.request{ port = s.port, path = "/ip" })
        assert.same({ remote_addr = "127.0.0.1", admin = false }, http.json(res))
    end)

    it("reloads every worker through POST /_host/reload on the admin socket", function()
        local before = http.json(assert(s:admin{ path = "/_host/status" })).generation
        local res = assert(s:admin{ method = "POST", path = "/_host/reload", timeout = 10 })
        assert.equal(200, res.status, res.body)
        local body = http.json(res)
        assert.is_true(body.ok)
        assert.is_true(body.generation > before)
        server.wait_until(function()
            local log = s:error_log()
            return log:find("%d#0 reloaded: generation") and log:find("%d#1 reloaded: generation")
        end, 5, "both workers to reload")
        -- and `fcfs -s reload` keeps working
        local code, out = s:cli("-s reload")
        assert.equal(0, code, out)
    end)

    it("keeps the socket owner-only and removes it at stop", function()
        local rc, mode = shell.sh("stat -c %a " .. shell.q(s.admin_sock))
        assert.equal(0, rc, mode)
        assert.equal("600", (mode:gsub("%s+$", "")))
        s:stop()
        assert.is_nil(shell.read_file(s.admin_sock))
        assert.equal(1, (shell.sh("test -e " .. shell.q(s.admin_sock))))
        s:assert_no_errors()
    end)
end)

describe("admin socket file", function()
    it("is never taken from a live node, and replaced when its node was killed", function()
        local first = start{}
        local path = first.admin_sock
        finally(function()
            first:stop()
        end)
        local ok, err = pcall(start, { admin_listen = "unix:" .. path })
        assert.is_false(ok)
        assert.matches("admin_listen: listen unix:" .. path .. ": Address already in use", err, 1, true)
        assert.equal(200, assert(first:admin{ path = "/_host/status" }).status)

        first:signal("KILL")
        server.wait_until(function()
            return not shell.alive(first:pid())
        end, 5, "the first node to die")
        assert.equal(0, (shell.sh("test -S " .. shell.q(path)))) -- left behind
        local second = start{ admin_listen = "unix:" .. path }
        finally(function()
            second:stop()
        end)
        local res = assert(second:admin{ path = "/ip" })
        assert.equal(200, res.status)
        assert.is_true(http.json(res).admin)
        second:stop()
        second:assert_no_errors()
    end)
end)

describe("admin listener on a loopback port", function()
    it("serves /_host/* there and not on the public port", function()
        local port = raw.free_port()
        local s = start{ admin_listen = "127.0.0.1:" .. port }
        finally(function()
            s:stop()
        end)
        local res = assert(http.request{ port = port, path = "/_host/status" })
        assert.equal(200, res.status, res.body)
        assert.equal(1, http.json(res).worker_count)
        assert_not_found(assert(http.request{ port = s.port, path = "/_host/status" }), "public")
        s:stop()
        s:assert_no_errors()
    end)

    it("refuses a non-loopback admin_listen at config load, naming the key", function()
        local s = start{}
        finally(function()
            s:stop()
        end)
        for _, bad in ipairs{ "0.0.0.0:9145", "*:9145", "10.1.2.3:9145", "[::]:9145", "localhost:9145", "unix:" } do
            local rc, out = shell.sh(format("cd %s && FCFS_ADMIN_LISTEN=%s %s -c %s -t", shell.q(s.dir),
                shell.q(bad), shell.q(s.bin), shell.q(s.conf_path)))
            assert.are_not.equal(0, rc, bad)
            assert.matches("admin_listen", out, 1, true)
        end
    end)
end)

describe("client addresses behind proxies", function()
    local function ip(s, xff)
        local headers = {}
        for i, v in ipairs(xff or {}) do
            headers[i] = { "X-Forwarded-For", v }
        end
        local res = assert(http.request{ port = s.port, path = "/ip", headers = headers })
        assert.equal(200, res.status, res.body)
        return http.json(res).remote_addr
    end

    it("ignores X-Forwarded-For from a peer that is not a trusted proxy", function()
        local s = start{ real_ip_from = { "10.0.0.0/8", "::1/128" } }
        finally(function()
            s:stop()
        end)
        assert.equal("127.0.0.1", ip(s))
        assert.equal("127.0.0.1", ip(s, { "203.0.113.7" }))
        assert.equal("127.0.0.1", ip(s, { "203.0.113.7, 10.0.0.1" }))
        s:stop()
        s:assert_no_errors()
    end)

    it("takes the right-most untrusted address of X-Forwarded-For from a trusted proxy", function()
        local s = start{ real_ip_from = { "127.0.0.1/32", "10.0.0.0/8" } }
        finally(function()
            s:stop()
        end)
        local cases = {
            { nil, "127.0.0.1" },
            { { "203.0.113.7" }, "203.0.113.7" },
            { { "198.51.100.1, 203.0.113.7, 10.1.2.3" }, "203.0.113.7" },
            { { " 198.51.100.1 ,10.9.9.9 , 10.1.2.3 " }, "198.51.100.1" },
            { { "10.0.0.2, 10.0.0.1" }, "10.0.0.2" },         -- all trusted: the left-most
            { { "198.51.100.1", "10.0.0.5" }, "198.51.100.1" }, -- repeated header: last one first
            { { "2001:DB8::1" }, "2001:db8::1" },
            { { "::ffff:10.0.0.1, 192.0.2.4" }, "192.0.2.4" },
            { { "192.0.2.4, ::ffff:10.0.0.1" }, "192.0.2.4" }, -- a mapped v4 address is v4
            { { "nonsense" }, "127.0.0.1" },                   -- junk: keep the peer
            { { "198.51.100.1, junk, 10.0.0.1" }, "10.0.0.1" }, -- stop at junk, keep the last address
            { { "1.2.3.4:5678" }, "127.0.0.1" },
        }
        for _, c in ipairs(cases) do
            assert.equal(c[2], ip(s, c[1]), c[1] and table.concat(c[1], " | ") or "no header")
        end
        -- the access log names the client too
        server.wait_until(function()
            return s:access_log():find('"client":"203.0.113.7"', 1, true)
        end, 5, "the access log line of 203.0.113.7")
        s:stop()
        s:assert_no_errors()
    end)

    it("reads the header real_ip_header names", function()
        local s = start{ real_ip_from = { "127.0.0.0/8" }, real_ip_header = "X-Real-IP" }
        finally(function()
            s:stop()
        end)
        local res = assert(http.request{ port = s.port, path = "/ip",
            headers = { ["X-Real-IP"] = "192.0.2.55", ["X-Forwarded-For"] = "198.51.100.1" } })
        assert.equal("192.0.2.55", http.json(res).remote_addr)
        s:stop()
        s:assert_no_errors()
    end)

    it("refuses a real_ip_from entry that is not an address or CIDR, naming the key", function()
        local s = start{}
        finally(function()
            s:stop()
        end)
        for _, bad in ipairs{ "10.0.0.0/33", "10.0.0/8", "example.com", "::1/129", "10.0.0.0/x" } do
            local rc, out = shell.sh(format("cd %s && FCFS_REAL_IP_FROM=%s %s -c %s -t", shell.q(s.dir),
                shell.q("127.0.0.1/32, " .. bad), shell.q(s.bin), shell.q(s.conf_path)))
            assert.are_not.equal(0, rc, bad)
            assert.matches("real_ip_from", out, 1, true)
            assert.matches(bad, out, 1, true)
        end
    end)
end)
