-- Black-box spec of the Redis pool behind Sentinel (redis_sentinels, redis_master_name): a master
-- and a replica (spec/support/redis_ctl.lua) watched by a real redis-sentinel, and fcfs
-- ($FCFS_BIN, 2 workers) configured with the sentinel only. Covered: the pool asks the sentinel
-- where the master is; kill -9 of the master, the sentinel promotes the replica, and the host
-- writes to the new master without a restart; the old master, back and demoted to a replica, is
-- promoted again by SENTINEL FAILOVER while the other one stays up (and a master for seconds):
-- the host follows the sentinel's answer within its recheck interval; a bad sentinel address is
-- refused at start.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/sentinel_spec.lua
-- (the repository's app.lua is the base of the test app: run it with the FCFS_TEST_MYSQL_*
-- variables `etc/dev test` exports.)
local socket = require "socket"
local server = require "spec.support.server"
local http = require "spec.support.http"
local ctl = require "spec.support.redis_ctl"
local shell = require "spec.support.shell"
local q, sh, alive = shell.q, shell.sh, shell.alive

local format = string.format

local NAME = "specmaster"

-- /where: which server answers (its TCP port), and a write + read on it (Redis down: 503)
local APP = [==[
local app = require "sentinelspec_base"
local redis, check = require("host").redis, require("lib.web").check

app:get("/where", function(req)
    local info = check(redis.call("INFO", "server"))
    local k = "sentinel:" .. req:arg("k")
    check(redis.call("SET", k, req:arg("k")))
    return { json = { port = tonumber(info:match("tcp_port:(%d+)")), v = check(redis.call("GET", k)) } }
end)

return app
]==]

-- A redis-sentinel watching `master` under NAME (quorum 1, down after 500 ms), in its own
-- directory beside the servers' (its pid in spawned.pid for the clean-up of `etc/dev test`).
local function start_sentinel(master)
    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-sentinel.XXXXXX\"")
    dir = dir:gsub("%s+$", "")
    local port = ctl.free_port()
    local f = assert(io.open(dir .. "/sentinel.conf", "w"))
    f:write(table.concat({
        "bind 127.0.0.1",
        "port " .. port,
        "daemonize no",
        "dir " .. dir,
        "logfile " .. dir .. "/sentinel.log",
        format("sentinel monitor %s 127.0.0.1 %d 1", NAME, master.port),
        format("sentinel down-after-milliseconds %s 500", NAME),
        format("sentinel failover-timeout %s 5000", NAME),
        "",
    }, "\n"))
    f:close()
    local rc, out = sh(format("redis-sentinel %s </dev/null >>%s 2>&1 & echo $! >%s; cat %s",
        q(dir .. "/sentinel.conf"), q(dir .. "/stdout.log"), q(dir .. "/spawned.pid"), q(dir .. "/spawned.pid")))
    assert(rc == 0, out)
    local s = { dir = dir, port = port, pid = tonumber(out:match("%d+")) }
    function s.cli(...)
        local args = { "redis-cli", "-p", tostring(port) }
        for _, a in ipairs({ ... }) do
            args[#args + 1] = q(a)
        end
        local _, o = sh(table.concat(args, " "))
        return o
    end
    -- the master's port as the sentinel sees it
    function s.master_port()
        return tonumber(s.cli("SENTINEL", "get-master-addr-by-name", NAME):match("\n(%d+)"))
    end
    function s.stop()
        if alive(s.pid) then
            sh("kill -TERM " .. s.pid)
            server.wait_until(function() return not alive(s.pid) end, 5, "redis-sentinel to stop")
        end
        if os.getenv("FCFS_TEST_KEEP") ~= "1" then
            sh("rm -rf " .. q(dir))
        end
    end
    server.wait_until(function() return s.master_port() == master.port end, 10, "the sentinel to answer")
    return s
end

-- {port =, v =} of a 200, else nil and what came instead
local function where(s, k)
    local res, err = http.request{ port = s.port, path = "/where?k=" .. k, timeout = 5 }
    if res and res.status == 200 then
        return http.json(res)
    end
    return nil, res and (res.status .. " " .. res.body) or err
end

-- every worker serves from `port`: 20 answers in a row from it (the workers each have a pool)
local function all_on(s, port, k)
    local n = 0
    for i = 1, 200 do
        local w = where(s, k .. i)
        n = w and w.port == port and n + 1 or 0
        if n == 20 then
            return true
        end
        socket.sleep(0.02)
    end
    return false
end

describe("the Redis pool behind Sentinel", function()
    local a, b, sentinel, s

    setup(function()
        a = ctl.start()
        b = ctl.start()
        assert(b:call("REPLICAOF", "127.0.0.1", a.port))
        server.wait_until(function() return b:info("master_link_status") == "up" end, 10, "the replica to sync")
        sentinel = start_sentinel(a)
        -- the sentinel learns about the replica from the master's INFO (every 10 s at first)
        server.wait_until(function()
            return sentinel.cli("SENTINEL", "replicas", NAME):find(tostring(b.port), 1, true) ~= nil
        end, 20, "the sentinel to see the replica")
        s = server.start{ app = APP, lua_files = { ["sentinelspec_base.lua"] = server.repo_file("lua/app.lua") },
            conf = { workers = 2, redis = "127.0.0.1:1", redis_sentinels = { "127.0.0.1:" .. sentinel.port },
                redis_master_name = NAME, drain_timeout = 1 } }
    end)

    teardown(function()
        if s then
            s:stop()
        end
        if sentinel then
            sentinel.stop()
        end
        if a then
            a:stop()
        end
        if b then
            b:stop()
        end
    end)

    it("asks the sentinel where the master is (the `redis` key is not used)", function()
        for i = 1, 10 do
            local w = assert(where(s, "before" .. i))
            assert.equal(a.port, w.port)
            assert.equal("before" .. i, w.v)
        end
    end)

    it("follows a failover after kill -9 of the master, and a SENTINEL FAILOVER back", function()
        a:kill9()
        local t0 = socket.gettime()
        server.wait_until(function() return sentinel.master_port() == b.port end, 20, "the sentinel to promote b")
        local w
        server.wait_until(function()
            w = where(s, "after")
            return w and w.port == b.port
        end, 10, "fcfs to write to the new master")
        print(format("# kill -9 of the master to the first write on the promoted replica: %.1f s",
            socket.gettime() - t0))
        assert.equal("after", w.v)
        assert.is_true(all_on(s, b.port, "after"))
        print(format("# every worker writes to it: %.1f s", socket.gettime() - t0))

        -- the old master comes back (as a master of nothing); the sentinel makes it a replica of b
        a:restart()
        server.wait_until(function()
            return a:info("role") == "slave" and a:info("master_link_status") == "up"
        end, 30, "the sentinel to demote the old master")
        for i = 1, 10 do
            assert.equal(b.port, assert(where(s, "demoted" .. i)).port)
        end
        -- a graceful failover: b stays up
        server.wait_until(function() return sentinel.cli("SENTINEL", "failover", NAME):find("OK") end, 10,
            "SENTINEL FAILOVER to be accepted")
        server.wait_until(function() return sentinel.master_port() == a.port end, 20, "the sentinel to promote a")
        -- b stays a master for seconds (until the sentinel demotes it): fcfs follows the sentinel's
        -- answer (asked every second), not b's demotion
        t0 = socket.gettime()
        server.wait_until(function()
            w = where(s, "back")
            return w and w.port == a.port
        end, 3, "fcfs to write to a again")
        print(format("# SENTINEL FAILOVER promoted a; fcfs writes to it %.1f s later", socket.gettime() - t0))
        assert.equal("back", w.v)
        assert.is_true(all_on(s, a.port, "back"))
        s:assert_no_errors{ "redis: no connection up", "sentinel" }
    end)
end)

describe("redis_sentinels", function()
    it("refuses an entry that is not IP:port, naming the key", function()
        local code, out = server.run("-c " .. server.root .. "/etc/fcfs.lua -t",
            { FCFS_REDIS_SENTINELS = "127.0.0.1:26379,sentinel.example:26379" })
        assert.is_not.equal(0, code)
        assert.truthy(out:find("redis_sentinels", 1, true), out)
        assert.truthy(out:find("sentinel.example:26379", 1, true), out)
    end)
end)
