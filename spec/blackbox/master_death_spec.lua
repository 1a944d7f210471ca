-- Master death (issue 11): the master is killed with SIGKILL in the middle of a flash sale and started
-- again with the same command at once, as systemd does with etc/fcfs.service (Restart=always,
-- RestartSec=100ms, KillMode=process: the dead master's workers are left to drain).
--
-- Covered: the old workers stop accepting and exit within drain_timeout; the new master waits for
-- the port they held (the pid file names a dead master), takes over the stale pid file, the admin
-- socket and run_dir; /healthz answers again (the gap is printed); the sale goes on with its
-- holds: 0 oversold, every 200 pay an order in MySQL once, reconcile OK.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/master_death_spec.lua
local socket = require "socket"
local server = require "spec.support.server"
local shell = require "spec.support.shell"
local http = require "spec.support.http"
local shop = require "spec.support.shop"

local sh, alive, format = shell.sh, shell.alive, string.format

describe("master death", function()
    local env, s, admin

    local function entry(token, pid)
        return env:call("POST", "/api/flash/products/{id}/entry", { path = "/api/flash/products/" .. pid .. "/entry",
            token = token })
    end

    local function pay(token, oid)
        return env:call("POST", "/api/flash/orders/{id}/pay", { path = "/api/flash/orders/" .. oid .. "/pay",
            token = token })
    end

    lazy_setup(function()
        env = shop.setup("fcfs_master_death_spec", { workers = 2, drain_timeout = 3 },
            { hold_seconds = 60, payment = { failure_rate = 0 } })
        s = env.s
        admin = env:member("admin", "ADMIN")
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    it("comes back after kill -9 of the master when restarted as systemd would, with no oversell", function()
        local STOCK = 4
        local now = socket.gettime() + 9 * 3600
        local res = env:call("POST", "/api/products", { token = admin.token, json = {
            name = "마스터 " .. env.run, price = 7000, type = "FLASH", stock = STOCK,
            sale_starts_at = os.date("!%Y-%m-%dT%H:%M:%S+09:00", math.floor(now - 5)),
            sale_ends_at = os.date("!%Y-%m-%dT%H:%M:%S+09:00", math.floor(now + 3600)), per_user_limit = 1 } })
        assert.equal(201, res.status, res.body)
        local pid = res.json.id
        local members = {}
        for i = 1, 6 do members[i] = env:member("m") end
        -- two holds before the death, one of them paid
        local h1, h2 = entry(members[1].token, pid), entry(members[2].token, pid)
        assert.same({ 201, 201 }, { h1.status, h2.status })
        local paid = { assert(pay(members[1].token, h1.json.order_id).json.order_id) }

        local master, workers = s:pid(), s:worker_pids()
        assert.equal(2, #workers)
        local t0 = socket.gettime()
        sh("kill -KILL " .. master)
        socket.sleep(0.1) -- RestartSec=100ms
        s:spawn()
        local gap
        server.wait_until(function()
            local r = http.request { port = s.port, path = "/healthz", timeout = 0.5 }
            if r and r.status == 200 then gap = socket.gettime() - t0 end
            return gap
        end, 15, "/healthz after the restart")
        print(format("# master killed: /healthz answered again %.0f ms later (restart after 100 ms)", gap * 1000))
        assert.is_true(gap < 5, tostring(gap))
        server.wait_until(function() return s:pid() ~= master and alive(s:pid()) end, 5, "the new master's pid file")
        assert.equal(2, #s:worker_pids())
        server.wait_until(function()
            for _, w in ipairs(workers) do
                if alive(w) then return false end
            end
            return true
        end, 5, "the old workers to drain and exit")
        assert.equal(200, s:admin { path = "/_host/status" }.status)

        -- the sale goes on: the held unit is paid, the rest sells out, nobody gets a unit too many
        paid[#paid + 1] = assert(pay(members[2].token, h2.json.order_id).json.order_id)
        local sold_out = 0
        for i = 3, #members do
            local r = entry(members[i].token, pid)
            if r.status == 201 then
                paid[#paid + 1] = assert(pay(members[i].token, r.json.order_id).json.order_id)
            else
                assert.equal(409, r.status, r.body)
                sold_out = sold_out + 1
            end
        end
        assert.same({ STOCK, 2 }, { #paid, sold_out })
        assert.equal(STOCK, tonumber(env:sql(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d AND "
            .. "state = 'PAID'", pid))[1][1]))
        assert.equal(STOCK, tonumber(env:sql(format("SELECT COUNT(*) FROM orders WHERE id IN (%s)",
            table.concat(paid, ",")))[1][1]))
        local code, out = s:cli { "run", s.lua_dir .. "/cli/reconcile.lua", tostring(pid) }
        assert.equal(0, code, out)
    end)

    it("logs no unexpected error", function()
        env:assert_no_errors()
    end)
end)
