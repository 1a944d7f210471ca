-- Black-box specs of the order lifecycle (API.md "Orders"; lua/jobs/lifecycle.lua) with the day D
-- set to 2 s: two hosts of 2 workers each on one database, so four workers and two schedulers race
-- for every transition.
--
-- Covered: SHIPPING at ordered_at + D and never before, DELIVERED at + 2D and never before, with
-- exactly those times stored (not the time a job ran); cancel refused once SHIPPING; a return within
-- D of delivery, RETURNED at request + D with the stock back then (not before, and once); a return
-- after delivered_at + D refused; one history row per transition; after both hosts are down for 3D,
-- every overdue transition happens once with its scheduled time.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/order_lifecycle_spec.lua
local socket = require "socket"
local shop = require "spec.support.shop"

local format = string.format
local now = socket.gettime

local D = 2
local APP = { day_seconds = D, lifecycle_interval = 0.1 }

describe("order lifecycle (D = 2 s, two hosts x 2 workers)", function()
    local env, s2, a, admin, product

    local function call(...) return env:call(...) end

    local function stock()
        return tonumber(env:sql(format("SELECT stock FROM products WHERE id = %d", product.id))[1][1])
    end

    local function order(qty)
        local res = call("POST", "/api/orders", { token = a.token,
            json = { items = { { product_id = product.id, quantity = qty or 1 } } } })
        assert.equal(201, res.status, res.body)
        return res.json
    end

    -- GET the order from either host; returns the order and the time the answer arrived.
    local flip = 0
    local function get(id)
        flip = flip + 1
        local res = call("GET", "/api/orders/{id}", { path = "/api/orders/" .. id, token = a.token,
            server = (flip % 2 == 0) and s2 or env.s })
        assert.equal(200, res.status, res.body)
        return res.json, now()
    end

    -- Poll until the order reaches status (at most `within` s); every answer is checked by
    -- seen(o, t, v), v = probe() read just before the request. Returns the order and the arrival time
    -- of the first answer showing status.
    local function wait_status(id, status, within, seen, probe)
        local deadline = now() + within
        while now() < deadline do
            local v = probe and probe()
            local o, t = get(id)
            if seen then seen(o, t, v) end
            if o.status == status then return o, t end
            socket.sleep(0.03)
        end
        error(format("order %d did not reach %s within %.1f s", id, status, within))
    end

    local function near(expected, actual, what)
        assert.is_true(math.abs(expected - actual) < 0.002, format("%s: %.3f, expected %.3f", what, actual, expected))
    end

    local function transitions(id)
        local rows = env:sql(format("SELECT to_status, COUNT(*) FROM order_transitions WHERE order_id = %d "
            .. "GROUP BY to_status ORDER BY to_status", id))
        local t = {}
        for _, r in ipairs(rows) do t[r[1]] = tonumber(r[2]) end
        return t
    end

    lazy_setup(function()
        env = shop.setup("fcfs_order_lifecycle_spec", { workers = 2 }, APP)
        s2 = env:start({ workers = 2 }, APP)
        a = env:member("a")
        admin = env:member("admin", "ADMIN")
        local res = call("POST", "/api/products", { token = admin.token,
            json = { name = "lifecycle " .. env.run, price = 1000, stock = 100 } })
        assert.equal(201, res.status, res.body)
        product = res.json
    end)

    lazy_teardown(function()
        if env then env:teardown() end
    end)

    it("ships at ordered_at + D and delivers at + 2D, never before; cancel is refused once SHIPPING", function()
        local o = order()
        local ordered = shop.epoch(o.ordered_at)
        local function seen(x, t)
            if x.status ~= "ORDERED" then
                assert.is_true(t >= ordered + D, format("%s seen %.3f s after the order", x.status, t - ordered))
            end
            if x.status == "DELIVERED" then
                assert.is_true(t >= ordered + 2 * D, format("DELIVERED seen %.3f s after the order", t - ordered))
            end
        end
        local shipped, t1 = wait_status(o.id, "SHIPPING", 3 * D, seen)
        print(format("\nSHIPPING seen %.3f s after ordered_at (due %d s)", t1 - ordered, D))
        assert.is_true(t1 - ordered < D + 1, "SHIPPING late")
        assert.equal("배송중", shipped.status_label)
        near(ordered + D, shop.epoch(shipped.shipped_at), "shipped_at")
        local e = call("POST", "/api/orders/{id}/cancel", { path = "/api/orders/" .. o.id .. "/cancel",
            token = a.token })
        assert.equal(409, e.status, e.body)
        assert.equal("CANNOT_CANCEL", e.json.error.code)
        local delivered, t2 = wait_status(o.id, "DELIVERED", 3 * D, seen)
        print(format("DELIVERED seen %.3f s after ordered_at (due %d s)", t2 - ordered, 2 * D))
        assert.is_true(t2 - ordered < 2 * D + 1, "DELIVERED late")
        near(ordered + 2 * D, shop.epoch(delivered.delivered_at), "delivered_at")
        near(ordered + D, shop.epoch(delivered.shipped_at), "shipped_at")
        local history = {}
        for _, tr in ipairs(delivered.transitions) do history[#history + 1] = tr.to end
        assert.same({ "ORDERED", "SHIPPING", "DELIVERED" }, history)
        assert.same({ ORDERED = 1, SHIPPING = 1, DELIVERED = 1 }, transitions(o.id))
    end)

    it("returns within D of delivery: RETURNED at request + D with the stock back then; late returns refused",
        function()
            local o, late = order(3), order(1)
            local before = stock()
            local delivered = wait_status(o.id, "DELIVERED", 3 * D)
            local e = call("POST", "/api/orders/{id}/return", { path = "/api/orders/" .. o.id .. "/return",
                token = a.token })
            assert.equal(200, e.status, e.body)
            assert.equal("RETURN_REQUESTED", e.json.status)
            assert.equal("반품 신청", e.json.status_label)
            local requested = shop.epoch(e.json.return_requested_at)
            assert.is_true(requested < shop.epoch(delivered.delivered_at) + D)
            local function seen(x, t, stock_before)
                if x.status ~= "RETURNED" then
                    assert.equal(before, stock_before)
                else
                    assert.is_true(t >= requested + D, format("RETURNED seen %.3f s after the request", t - requested))
                end
            end
            local returned, t = wait_status(o.id, "RETURNED", 3 * D, seen, stock)
            print(format("\nRETURNED seen %.3f s after the request (due %d s)", t - requested, D))
            near(requested + D, shop.epoch(returned.returned_at), "returned_at")
            assert.equal("반품 완료", returned.status_label)
            assert.equal(before + 3, stock())
            assert.same({ ORDERED = 1, SHIPPING = 1, DELIVERED = 1, RETURN_REQUESTED = 1, RETURNED = 1 },
                transitions(o.id))
            -- `late` was delivered with o; wait until its window (delivered_at + D) is over
            local ld = wait_status(late.id, "DELIVERED", 3 * D)
            local wait = shop.epoch(ld.delivered_at) + D - now() + 0.05
            if wait > 0 then socket.sleep(wait) end
            local r = call("POST", "/api/orders/{id}/return", { path = "/api/orders/" .. late.id .. "/return",
                token = a.token })
            assert.equal(409, r.status, r.body)
            assert.equal("RETURN_WINDOW_CLOSED", r.json.error.code)
            assert.equal(before + 3, stock())
        end)

    it("catches up after both hosts were down for 3D: every overdue transition once, at its scheduled time",
        function()
            local x = order(2)
            wait_status(x.id, "DELIVERED", 3 * D)
            local rr = call("POST", "/api/orders/{id}/return", { path = "/api/orders/" .. x.id .. "/return",
                token = a.token })
            assert.equal(200, rr.status, rr.body)
            local requested = shop.epoch(rr.json.return_requested_at)
            local fresh = {}
            for i = 1, 5 do fresh[i] = order(1) end
            local before = stock()
            env:stop_all()
            socket.sleep(3 * D)
            env.s = env:start({ workers = 2 }, APP)
            s2 = env:start({ workers = 2 }, APP)
            for _, f in ipairs(fresh) do
                local o = wait_status(f.id, "DELIVERED", 2)
                local ordered = shop.epoch(o.ordered_at)
                near(ordered + D, shop.epoch(o.shipped_at), "shipped_at")
                near(ordered + 2 * D, shop.epoch(o.delivered_at), "delivered_at")
                assert.same({ ORDERED = 1, SHIPPING = 1, DELIVERED = 1 }, transitions(f.id))
            end
            local r = wait_status(x.id, "RETURNED", 2)
            near(requested + D, shop.epoch(r.returned_at), "returned_at")
            assert.equal(before + 2, stock())
            assert.same({ ORDERED = 1, SHIPPING = 1, DELIVERED = 1, RETURN_REQUESTED = 1, RETURNED = 1 },
                transitions(x.id))
            -- and nothing more happens later
            socket.sleep(0.5)
            assert.equal(before + 2, stock())
        end)

    it("logs no unexpected error", function()
        env:assert_no_errors()
    end)
end)
