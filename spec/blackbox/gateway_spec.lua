-- Services across hosts behind the gateway: three fcfs hosts on loopback sharing one Redis and one
-- database -- A serves users + commerce (app.modules), B and C the flash purchase -- and Debian's
-- nginx in front of them with the repository's etc/nginx/ config (its own prefix, port and pid; only
-- the listen line and the upstream addresses are the spec's).
--
-- Covered: each host serves only its modules; the gateway routes every prefix to its service,
-- blocks the admin paths, passes X-Request-Id through (or makes one) and sets the client address
-- the hosts trust (real_ip_from); a small flash sale through the gateway (members, admin and
-- products on A, entries and pays spread over B and C): 0 oversold, every 200 pay an order in
-- MySQL exactly once, reconcile OK; a unit released on B reopens C's sold-out gate (pub/sub); a lost
-- message is repaired by the periodic versioned check of a fourth host, and an older one is ignored.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/gateway_spec.lua
local socket = require "socket"
local shop = require "spec.support.shop"
local server = require "spec.support.server"
local http = require "spec.support.http"
local shell = require "spec.support.shell"

local format = string.format
local q, sh = shell.q, shell.sh

local COMMERCE = { "users", "products", "wishlist", "orders" }
-- the sweeps (which also refresh every gate from Redis) run at start and then once a minute: a gate
-- that reopens within seconds was reopened by the pub/sub message
local FLASH = { modules = { "flash" }, hold_seconds = 60, flash_sweep_interval = 60, payment = { failure_rate = 0 } }

-- nginx under dir: the repository's gateway config with its listen line set to port and the
-- upstreams pointing at the hosts; -> the gateway as a server-like { port = } and a stop function.
local function start_nginx(port, users, flash)
    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-gw.XXXXXX\"")
    dir = dir:gsub("%s+$", "")
    local gw = assert(io.open(server.root .. "/etc/nginx/fcfs-gateway.conf")):read("*a")
    gw = gw:gsub("listen %[::%]:80;", ""):gsub("listen 80;", "listen 127.0.0.1:" .. port .. ";")
    local ups = assert(io.open(server.root .. "/etc/nginx/fcfs-upstreams.conf")):read("*a")
    ups = ups:gsub("(upstream fcfs_(%w+) {)(.-)(keepalive)", function(head, name, _, tail)
        local hosts = name == "flash" and flash or { users } -- users + commerce + the storefront: host A
        local lines = {}
        for i, s in ipairs(hosts) do lines[i] = format("    server 127.0.0.1:%d;\n", s.port) end
        return head .. "\n" .. table.concat(lines) .. "    " .. tail
    end)
    local function put(name, text)
        local f = assert(io.open(dir .. "/" .. name, "w"))
        f:write(text)
        f:close()
    end
    put("gateway.conf", gw)
    put("upstreams.conf", ups)
    put("nginx.conf", format([[
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 512; }
http {
    access_log %s/access.log;
    client_body_temp_path %s/tmp;
    proxy_temp_path %s/tmp;
    fastcgi_temp_path %s/tmp;
    uwsgi_temp_path %s/tmp;
    scgi_temp_path %s/tmp;
    include %s/upstreams.conf;
    include %s/gateway.conf;
}
]], dir, dir, dir, dir, dir, dir, dir, dir, dir, dir))
    local cmd = format("nginx -p %s -c %s/nginx.conf", q(dir), q(dir))
    local rc, out = sh(cmd .. " 2>&1")
    assert(rc == 0, "nginx did not start: " .. out)
    server.wait_until(function()
        local res = http.request { port = port, path = "/healthz", timeout = 1 }
        return res and res.status == 200
    end, 5, "the gateway")
    return { port = port, dir = dir }, function()
        sh(cmd .. " -s stop 2>&1")
        server.wait_until(function() return sh("test -e " .. q(dir .. "/nginx.pid")) ~= 0 end, 5)
        sh("rm -rf " .. q(dir))
    end
end

-- The JSON access log line of host s with this request id (the log is flushed every 100 ms).
local function access_line(s, id)
    local line
    server.wait_until(function()
        line = s:access_log():match("[^\n]*\"request_id\":\"" .. id:gsub("%p", "%%%0") .. "\"[^\n]*")
        return line
    end, 3, "access log line " .. id)
    return line
end

describe("services behind the gateway", function()
    local env, a, b, c, gw, stop_gw, admin

    local function call(method, pattern, opts)
        opts = opts or {}
        opts.server = opts.server or gw
        return env:call(method, pattern, opts)
    end

    local made = 0
    local function flash_product(stock)
        made = made + 1
        local now = socket.gettime() + 9 * 3600
        local res = call("POST", "/api/products", { token = admin.token, json = {
            name = format("게이트웨이 %d %s", made, env.run), price = 9000, type = "FLASH", stock = stock,
            sale_starts_at = os.date("!%Y-%m-%dT%H:%M:%S+09:00", math.floor(now - 5)),
            sale_ends_at = os.date("!%Y-%m-%dT%H:%M:%S+09:00", math.floor(now + 3600)), per_user_limit = 1 } })
        assert.equal(201, res.status, res.body)
        return res.json.id
    end

    local function entry(token, pid, srv)
        return call("POST", "/api/flash/products/{id}/entry", { path = "/api/flash/products/" .. pid .. "/entry",
            token = token, server = srv })
    end

    lazy_setup(function()
        local conf = { workers = 1, real_ip_from = { "127.0.0.1/32" } }
        env = shop.setup("fcfs_gateway_spec", { workers = 1, real_ip_from = conf.real_ip_from,
            static_dir = server.root .. "/www" }, { modules = COMMERCE })
        a = env.s
        b = env:start(conf, FLASH)
        c = env:start(conf, FLASH)
        gw, stop_gw = start_nginx(server.free_port(), a, { b, c })
        admin = env:member("admin", "ADMIN", gw)
    end)

    lazy_teardown(function()
        if stop_gw then stop_gw() end
        if env then env:teardown() end
    end)

    it("serves on each host only the modules of its app.modules; refuses an unknown module", function()
        assert.equal(404, http.request { port = b.port, path = "/api/products" }.status)
        assert.equal(200, http.request { port = a.port, path = "/api/products" }.status)
        local pid = flash_product(1)
        assert.equal(404, http.request { port = a.port, path = "/api/flash/products/" .. pid }.status)
        assert.equal(200, http.request { port = c.port, path = "/api/flash/products/" .. pid }.status)
        -- a name that is no module stops the load (fcfs -t, and so a start or a reload)
        local f = assert(io.open(a.conf_path))
        local conf = f:read("*a"):gsub('"wishlist"', '"wishlists"')
        f:close()
        f = assert(io.open(a.dir .. "/bad.lua", "w"))
        f:write(conf)
        f:close()
        local code, out = server.run(format("-c %s -t", q(a.dir .. "/bad.lua")))
        assert.is_true(code ~= 0, out)
        assert.truthy(out:find('app.modules: no module "wishlists"', 1, true), out)
    end)

    it("routes each prefix to its service, the rest to the storefront; blocks the admin paths", function()
        assert.equal(200, call("GET", "/api/products").status)
        assert.equal(401, call("GET", "/api/users/me").status)
        assert.equal(401, call("GET", "/api/orders").status)
        assert.equal(401, call("GET", "/api/wishlist").status)
        for _, path in ipairs({ "/metrics", "/_host/status", "/_host/reload", "/api/nothing" }) do
            local res = http.request { port = gw.port, path = path }
            assert.equal(404, res.status, path)
        end
        local page = http.request { port = gw.port, path = "/" }
        assert.equal(200, page.status)
        assert.truthy(page.headers["content-type"]:find("text/html", 1, true))
        assert.truthy(access_line(a, page.headers["x-request-id"]))
    end)

    it("passes X-Request-Id through, or makes one the host logs", function()
        local id = "gw-" .. env.run
        local res = http.request { port = gw.port, path = "/api/products", headers = { ["x-request-id"] = id } }
        assert.equal(id, res.headers["x-request-id"])
        assert.truthy(access_line(a, id))
        res = http.request { port = gw.port, path = "/api/products" }
        local given = res.headers["x-request-id"]
        assert.truthy(given and given:match("^%x+$") and #given == 32, tostring(given))
        assert.truthy(access_line(a, given))
    end)

    it("gives the hosts the client's address, never one the client claims", function()
        local id = "gwip-" .. env.run
        local s = socket.tcp()
        assert(s:bind("127.0.0.2", 0))
        assert(s:connect("127.0.0.1", gw.port))
        assert(s:send("GET /api/products HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: " .. id
            .. "\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n"))
        local head = s:receive("*l")
        s:close()
        assert.truthy(head:find(" 200 "), head)
        assert.truthy(access_line(a, id):find("\"client\":\"127.0.0.2\"", 1, true))
    end)

    it("sells a small flash sale through the gateway: 0 oversold, paid orders in MySQL, reconcile OK", function()
        local STOCK, BUYERS = 4, 7
        local pid = flash_product(STOCK)
        local members, held, paid = {}, {}, {}
        for i = 1, BUYERS do members[i] = env:member("buyer", nil, gw) end
        for i = 1, BUYERS do
            local res = entry(members[i].token, pid)
            if res.status == 201 then
                held[#held + 1] = { m = members[i], oid = res.json.order_id }
            else
                assert.equal(409, res.status, res.body)
                assert.equal("OUT_OF_STOCK", res.json.error.code)
            end
        end
        assert.equal(STOCK, #held)
        for _, h in ipairs(held) do
            local res = call("POST", "/api/flash/orders/{id}/pay", { path = "/api/flash/orders/" .. h.oid .. "/pay",
                token = h.m.token })
            assert.equal(200, res.status, res.body)
            paid[#paid + 1] = res.json.order_id
        end
        local sold = tonumber(env:sql(format("SELECT COUNT(*) FROM flash_orders WHERE product_id = %d AND state = "
            .. "'PAID'", pid))[1][1])
        assert.equal(STOCK, sold)
        assert.equal(STOCK, tonumber(env:sql(format("SELECT COUNT(DISTINCT o.id) FROM orders o WHERE o.id IN (%s)",
            table.concat(paid, ",")))[1][1]))
        -- both flash hosts took part (nginx round robin); a worker writes its access log out on its
        -- next tick, so the lines may lag the answers a little (more on a slow build)
        local hits = 0
        server.wait_until(function()
            hits = 0
            for _, s in ipairs({ b, c }) do
                if s:access_log():find("/api/flash/products/" .. pid .. "/entry", 1, true) then hits = hits + 1 end
            end
            return hits == 2
        end, 5, "both flash hosts' access logs to show an entry")
        assert.equal(2, hits)
        local code, out = a:cli { "run", a.lua_dir .. "/cli/reconcile.lua", tostring(pid) }
        assert.equal(0, code, out)
    end)

    it("streams the live stock (server-sent events) through the gateway unbuffered", function()
        local pid = flash_product(3)
        local sock = socket.tcp()
        sock:settimeout(3)
        assert(sock:connect("127.0.0.1", gw.port))
        assert(sock:send("GET /api/flash/products/" .. pid .. "/events HTTP/1.1\r\nHost: x\r\n"
            .. "Accept: text/event-stream\r\n\r\n"))
        local t0, lines, event = socket.gettime(), {}, false
        repeat
            local line, err = sock:receive("*l")
            assert(line, err)
            lines[#lines + 1] = line
            event = event or line == "event: stock"
        until event and line:find("^data:")
        sock:close()
        assert.truthy(lines[1]:find(" 200 "), lines[1])
        assert.truthy(lines[#lines]:find("\"remaining\":3", 1, true), lines[#lines])
        assert.is_true(socket.gettime() - t0 < 2)
    end)

    it("reopens the sold-out gate of the other flash host when a unit comes back", function()
        local pid = flash_product(1)
        local m1, m2 = env:member("r1", nil, gw), env:member("r2", nil, gw)
        local won = entry(m1.token, pid, b)
        assert.equal(201, won.status, won.body)
        for _ = 1, 2 do -- the second one is the gate's answer
            local res = entry(m2.token, pid, c)
            assert.equal(409, res.status, res.body)
        end
        local t0 = socket.gettime()
        local res = call("POST", "/api/flash/orders/{id}/cancel", { path = "/api/flash/orders/" .. won.json.order_id
            .. "/cancel", token = m1.token, server = b })
        assert.equal(204, res.status, res.body)
        local delay
        server.wait_until(function()
            res = entry(m2.token, pid, c)
            if res.status == 201 then delay = socket.gettime() - t0 end
            return delay
        end, 5, "the gate of host C to reopen")
        print(format("# gate reopened on the other flash host %.0f ms after the release", delay * 1000))
        assert.is_true(delay < 5, tostring(delay))
    end)

    it("repairs a lost stock message with the periodic check; an older message never moves a gate back", function()
        local d = env:start({ workers = 1 }, { modules = { "flash" }, hold_seconds = 60, flash_sweep_interval = 0.3,
            payment = { failure_rate = 0 } })
        local pid = flash_product(1)
        local m1, m2 = env:member("l1", nil, gw), env:member("l2", nil, gw)
        assert.equal(201, entry(m1.token, pid, d).status)
        for _ = 1, 2 do assert.equal(409, entry(m2.token, pid, d).status) end
        local function gate()
            return tonumber(d:metrics():match("fcfs_stock_remaining{product=\"" .. pid .. "\"} (%-?%d+)"))
        end
        assert.equal(0, gate())
        -- a unit back in Redis whose message was lost (no PUBLISH): only the sweep's check can see it
        local k = "{p:" .. pid .. "}:s"
        env.redis:call("HINCRBY", k, "initial", 1)
        env.redis:call("HINCRBY", k, "cap", 1) -- remaining = cap - seq
        local ver = tonumber(env.redis:call("HINCRBY", k, "ver", 1))
        local t0 = socket.gettime()
        server.wait_until(function() return gate() == 1 end, 5, "the sweep to reopen the gate")
        print(format("# lost message: the gate reopened by the periodic check %.0f ms later (sweep every 300 ms)",
            (socket.gettime() - t0) * 1000))
        env.redis:call("PUBLISH", "flash:stock", format("%d|0|%d|0", pid, ver - 1))
        socket.sleep(0.3)
        assert.equal(1, gate())
        assert.equal(201, entry(m2.token, pid, d).status)
    end)

    it("logs no unexpected error", function()
        env:assert_no_errors()
    end)
end)
