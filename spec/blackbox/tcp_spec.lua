-- Black-box specs of host.tcp(), the outbound TCP client: the real binary ($FCFS_BIN, default
-- build/fcfs) with a test app whose handlers talk to a throwaway line server the spec starts as its
-- own process (spec/support/tcp_peer.lua). Covered: a line protocol round trip (strings, arrays,
-- several lines in one segment), data arriving in pieces for "*l", n and receiveuntil, "*a", the
-- peer closing mid-line, connection refused, a connect timeout on a listener whose queue is full,
-- read timeouts that leave the connection usable, a send timeout on a peer that stops reading,
-- "localhost" resolved off the loop, a name the resolver refuses, the bounded read buffer, sockets
-- bound to their request, /healthz answering while handlers wait on a silent peer, and sockets
-- closed (the peer sees it) when a handler returns without closing, when collected, when its
-- client goes away mid-read and at the request deadline. The last block checks the error log (and, under ASan, stderr).
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/tcp_spec.lua
local socket = require "socket"
local cjson = require "cjson.safe"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local shell = require "spec.support.shell"

local format = string.format
local q, sh, read_file = shell.q, shell.sh, shell.read_file

local BASE_APP = server.repo_file("lua/app.lua")

local APP = [==[
local app = require "tcpspec_base"
local host = require "host"
local tonumber, pcall, tostring = tonumber, pcall, tostring

local function peer(req)
    local s = host.tcp()
    local ok, err = s:connect(req:arg("host") or "127.0.0.1", tonumber(req:arg("port")))
    if not ok then error("connect: " .. tostring(err)) end
    return s
end

-- all the values returned, nil as JSON null
local function pack(...)
    local t, n = { ... }, select("#", ...)
    for i = 1, n do
        if t[i] == nil then t[i] = host.null end
    end
    return t
end

app:get("/echo", function(req)
    local s = peer(req)
    local r = {}
    r.sent1 = s:send("ECHO hello world\r\n")
    r.line1 = s:receive()
    r.sent2 = s:send({ "ECHO ", "two", " ", 3, "\r\n" })
    r.line2 = s:receive("*l")
    s:send("LINES a b c\r\n")
    r.lines = { s:receive(), s:receive("l"), s:receive("*l") }
    s:send("QUIT\r\n")
    r.bye = s:receive()
    r.after = pack(s:receive())
    r.close = pack(s:close())
    return { json = r }
end)

app:get("/drip", function(req)
    local s = peer(req)
    local r = {}
    s:send("DRIP 0.03 abcdefghijklmnopq\r\n")
    r.line = s:receive()
    s:send("DRIP 0.03 0123456789ABCDEFG\r\n")
    r.n10 = s:receive(10)
    r.n7 = s:receive("7")
    r.crlf = s:receive(2)
    r.zero = s:receive(0)
    s:close()
    return { json = r }
end)

app:get("/until", function(req)
    local s = peer(req)
    local r = {}
    s:send("LINES a b . c\r\n")
    local read_body = s:receiveuntil("\r\n.\r\n")
    r.body = read_body()
    r.after = s:receive()
    s:send("DRIP 0.02 xx--abc--yy--abc--\r\n")
    local reader = s:receiveuntil("--abc--")
    r.first = reader()
    r.second = s:receiveuntil("--abc--", { inclusive = true })()
    r.rest = pack(s:receive(2))
    r.size = pack(pcall(reader, 10))
    s:send("PARTIAL no delimiter\r\n")
    r.closed = pack(reader())
    return { json = r }
end)

app:get("/partial", function(req)
    local s = peer(req)
    s:send("PARTIAL no line end\r\n")
    local r = { first = pack(s:receive()), again = pack(s:receive()), send = pack(s:send("x")) }
    s = peer(req)
    s:send("PARTIAL all of it\r\n")
    r.all = pack(s:receive("*a"))
    s = peer(req)
    s:send("PARTIAL 12345\r\n")
    r.count = pack(s:receive(8))
    return { json = r }
end)

app:get("/connect", function(req)
    local s = host.tcp()
    s:settimeouts(tonumber(req:arg("t")))
    local t0 = host.now()
    local ok, err = s:connect(req:arg("host") or "127.0.0.1", tonumber(req:arg("port")))
    return { json = { ok = ok, err = err, took = host.now() - t0 } }
end)

app:get("/bad-name", function()
    local s = host.tcp()
    return { json = { pack(s:connect("bad\255name", 25)) } }
end)

app:get("/read-timeout", function(req)
    local s = peer(req)
    s:settimeouts(nil, nil, 0.3)
    s:send("SILENT\r\n")
    local t0 = host.now()
    local r = { first = pack(s:receive()) }
    r.took = host.now() - t0
    s:send("DRIP 0.5 late\r\n")
    r.second = pack(s:receive())
    s:settimeout(2)
    r.third = s:receive()
    s:send("ECHO still open\r\n")
    r.fourth = s:receive()
    s:close()
    return { json = r }
end)

app:get("/send-timeout", function(req)
    local s = peer(req)
    s:send("STALL\r\n")
    s:settimeouts(nil, 0.3)
    local big = string.rep("x", 16 * 1024 * 1024)
    local t0 = host.now()
    local r = { big = pack(s:send(big)) }
    r.took = host.now() - t0
    r.after = pack(s:send("ECHO x\r\n"))
    return { json = r }
end)

app:get("/limits", function(req)
    local s = peer(req)
    local r = { over = pack(s:receive(4096)) }
    s:send("BIG 3000\r\n")
    r.line = pack(s:receive())
    r.after = pack(s:receive())
    s = peer(req)
    s:send("BIG 1000\r\n")
    local line = s:receive()
    r.fits = line and #line
    s:close()
    return { json = r }
end)

-- waits on a silent peer: for the concurrency and cancellation specs
app:get("/wait", function(req)
    local s = peer(req)
    s:settimeouts(nil, nil, tonumber(req:arg("t")))
    s:send("SILENT\r\n")
    local r = pack(s:receive())
    return { json = r }
end)

-- leaves the socket open: the host closes it when the request ends
app:get("/forget", function(req)
    local s = peer(req)
    s:send("ECHO x\r\n")
    return { json = { line = s:receive() } }
end)

app:get("/count", function(req)
    local s = peer(req)
    s:send("COUNT\r\n")
    local n = s:receive()
    s:close()
    return { json = { n = tonumber(n) } }
end)

local kept
app:get("/keep", function(req)
    kept = peer(req)
    return { json = { ok = true } }
end)

app:get("/reuse", function()
    local ok, err = pcall(kept.send, kept, "ECHO x\r\n")
    return { json = { ok = ok, err = tostring(err) } }
end)

app:get("/gc", function(req)
    for _ = 1, 50 do
        local s = peer(req)
        s:send("ECHO x\r\n")
        s:receive()
    end
    collectgarbage()
    collectgarbage()
    return { json = { ok = true } }
end)

app:get("/args", function()
    local s = host.tcp()
    local r = {}
    r.pattern = pack(pcall(s.receive, s, "*x"))
    r.port = pack(pcall(s.connect, s, "127.0.0.1", 70000))
    r.send = pack(pcall(s.send, s, true))
    r.closed = pack(s:receive())
    r.close = pack(s:close())
    return { json = r }
end)

return app
]==]

-- The peer process: started once for the whole file, stopped in teardown.
local peer_dir, peer_pid, PORT, HOLD_PORT

local function start_peer()
    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-tcp-peer.XXXXXX\"")
    peer_dir = dir:gsub("%s+$", "")
    local portfile = peer_dir .. "/ports"
    local _, out = sh(format("cd %s && luajit spec/support/tcp_peer.lua %s </dev/null >%s 2>&1 & echo $!",
        q(server.root), q(portfile), q(peer_dir .. "/peer.log")))
    peer_pid = tonumber(out:match("%d+"))
    local ports = server.wait_until(function()
        return read_file(portfile)
    end, 5, "the TCP peer to listen")
    local p, h = ports:match("^(%d+) (%d+)")
    PORT, HOLD_PORT = tonumber(p), tonumber(h)
end

local function stop_peer()
    if peer_pid then
        sh("kill " .. peer_pid)
    end
    if peer_dir then
        sh("rm -rf " .. q(peer_dir))
    end
end

local s

local function get(path, timeout)
    local res = assert(http.request{ port = s.port, path = path, timeout = timeout or 10 })
    local body = cjson.decode(res.body)
    return res, body
end

local function get_json(path)
    local res, body = get(path)
    assert.equal(200, res.status, res.body)
    return body
end

-- Open connections at the peer, other than the one asking.
local function peer_count()
    return get_json("/count?port=" .. PORT).n
end

setup(function()
    start_peer()
    s = server.start{
        app = APP,
        lua_files = { ["tcpspec_base.lua"] = BASE_APP },
        conf = {
            redis = "127.0.0.1:" .. raw.free_port(), -- nothing listens there: no Redis needed
            request_timeout = 3,
            tcp_buffer_max = 2048,
        },
    }
end)

teardown(function()
    if s then
        s:stop()
    end
    stop_peer()
end)

describe("host.tcp", function()
    it("speaks a line protocol: strings, arrays, several lines in one segment, peer close", function()
        local r = get_json("/echo?port=" .. PORT)
        assert.equal(18, r.sent1)
        assert.equal("hello world", r.line1)
        assert.equal(12, r.sent2)
        assert.equal("two 3", r.line2)
        assert.same({ "a", "b", "c" }, r.lines)
        assert.equal("bye", r.bye)
        assert.same({ cjson.null, "closed", "" }, r.after)
        assert.same({ cjson.null, "closed" }, r.close)
    end)

    it("assembles data arriving in pieces for \"*l\" and for byte counts", function()
        local r = get_json("/drip?port=" .. PORT)
        assert.equal("abcdefghijklmnopq", r.line)
        assert.equal("0123456789", r.n10)
        assert.equal("ABCDEFG", r.n7)
        assert.equal("\r\n", r.crlf)
        assert.equal("", r.zero)
    end)

    it("reads up to a delimiter with receiveuntil, also when the delimiter arrives in pieces", function()
        local r = get_json("/until?port=" .. PORT)
        assert.equal("a\r\nb", r.body)
        assert.equal("c", r.after)
        assert.equal("xx", r.first)
        assert.equal("yy--abc--", r.second)
        assert.same({ "\r\n" }, r.rest)
        assert.is_false(r.size[1])
        assert.matches("no size argument expected", r.size[2], 1, true)
        assert.same({ cjson.null, "closed", "no delimiter" }, r.closed)
    end)

    it("returns what came before the peer closed: \"closed\" and the partial data, or all of it for \"*a\"", function()
        local r = get_json("/partial?port=" .. PORT)
        assert.same({ cjson.null, "closed", "no line end" }, r.first)
        assert.same({ cjson.null, "closed" }, r.again)
        assert.same({ cjson.null, "closed" }, r.send)
        assert.same({ "all of it" }, r.all)
        assert.same({ cjson.null, "closed", "12345" }, r.count)
    end)

    it("fails at once with \"connection refused\" on a port nothing listens on", function()
        local r = get_json("/connect?t=2&port=" .. raw.free_port())
        assert.equal("connection refused", r.err)
        assert.is_true(r.took < 0.5, "took " .. r.took .. " s")
    end)

    it("times out connecting to a listener whose accept queue is full", function()
        local r = get_json("/connect?t=0.4&port=" .. HOLD_PORT)
        assert.equal("timeout", r.err)
        assert.is_true(r.took >= 0.35 and r.took < 1.5, "took " .. r.took .. " s")
    end)

    it("resolves \"localhost\" (off the loop) and connects", function()
        local r = get_json("/connect?t=2&host=localhost&port=" .. PORT)
        assert.same({ ok = true, took = r.took }, r)
        r = get_json("/echo?host=localhost&port=" .. PORT)
        assert.equal("hello world", r.line1)
    end)

    it("reports a name the resolver refuses as \"resolve: ...\"", function()
        local r = get_json("/bad-name")
        assert.equal(cjson.null, r[1][1])
        assert.equal("resolve: invalid argument", r[1][2]) -- libuv refuses the name before any lookup
    end)

    it("times out a read with the partial data, and the connection stays usable", function()
        local r = get_json("/read-timeout?port=" .. PORT)
        assert.same({ cjson.null, "timeout", "" }, r.first)
        assert.is_true(r.took >= 0.25 and r.took < 1, "took " .. r.took .. " s")
        -- "late\r\n" drips in 3-byte pieces 0.5 s apart: 0.3 s in, only "lat" is there
        assert.same({ cjson.null, "timeout", "lat" }, r.second)
        assert.equal("e", r.third)
        assert.equal("still open", r.fourth)
    end)

    it("times out a send the peer does not drain, and closes the connection", function()
        local r = get_json("/send-timeout?port=" .. PORT)
        assert.same({ cjson.null, "timeout" }, r.big)
        assert.is_true(r.took >= 0.25 and r.took < 1.5, "took " .. r.took .. " s")
        assert.same({ cjson.null, "closed" }, r.after)
    end)

    it("never buffers more than tcp_buffer_max for one receive", function()
        local r = get_json("/limits?port=" .. PORT)
        assert.same({ cjson.null, "too large" }, r.over)
        assert.equal(cjson.null, r.line[1])
        assert.equal("too large", r.line[2])
        assert.equal(2048, #r.line[3])
        assert.same({ cjson.null, "closed" }, r.after)
        assert.equal(1000, r.fits)
    end)

    it("checks its arguments, and a socket never connected is \"closed\"", function()
        local r = get_json("/args")
        assert.is_false(r.pattern[1])
        assert.matches('"*l", "*a" or a byte count expected', r.pattern[2], 1, true)
        assert.is_false(r.port[1])
        assert.matches("port out of range", r.port[2], 1, true)
        assert.is_false(r.send[1])
        assert.matches("string or array of strings expected", r.send[2], 1, true)
        assert.same({ cjson.null, "closed" }, r.closed)
        assert.same({ cjson.null, "closed" }, r.close)
    end)

    it("belongs to the request that created it: another request using it gets an error", function()
        assert.same({ ok = true }, get_json("/keep?port=" .. PORT))
        local r = get_json("/reuse")
        assert.is_false(r.ok)
        assert.matches("belongs to another request or timer", r.err, 1, true)
    end)

    it("does not block other requests: /healthz answers promptly while 5 handlers wait on a silent peer", function()
        local waiters = {}
        for i = 1, 5 do
            local c = assert(socket.connect("127.0.0.1", s.port))
            assert(c:send(format("GET /wait?t=1.5&port=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", PORT)))
            waiters[i] = c
        end
        local t_start = socket.gettime()
        socket.sleep(0.1)
        local worst = 0
        for _ = 1, 20 do
            local t0 = socket.gettime()
            local res = assert(http.request{ port = s.port, path = "/healthz", timeout = 5 })
            local took = socket.gettime() - t0
            assert.equal(200, res.status)
            worst = math.max(worst, took)
            socket.sleep(0.02)
        end
        local probing = socket.gettime() - t_start
        assert.is_true(probing < 1.4, "the probes outlasted the waits (" .. probing .. " s)")
        assert.is_true(worst < 0.1, "/healthz took up to " .. worst .. " s")
        for _, c in ipairs(waiters) do
            c:settimeout(5)
            local bytes = c:receive("*a")
            local status, _, body = raw.parse(bytes)
            assert.equal(200, status)
            assert.same({ cjson.null, "timeout", "" }, cjson.decode(body))
            c:close()
        end
        print(format("\n/healthz while 5 handlers waited on a silent peer: worst of 20 %.1f ms", worst * 1000))
    end)

    it("is closed when the handler returns without closing it, and when collected", function()
        assert.equal(0, peer_count())
        assert.same({ line = "x" }, get_json("/forget?port=" .. PORT))
        assert.same({ ok = true }, get_json("/gc?port=" .. PORT))
        server.wait_until(function()
            return peer_count() == 0
        end, 2, "the peer to see every socket closed")
    end)

    it("is closed when the handler of a client gone away ends (client_abort = finish: at the deadline)",
        function()
            local c = assert(socket.connect("127.0.0.1", s.port))
            assert(c:send(format("GET /wait?t=10&port=%d HTTP/1.1\r\nHost: x\r\n\r\n", PORT)))
            server.wait_until(function()
                return peer_count() == 1
            end, 2, "the handler to connect")
            c:close()
            server.wait_until(function()
                return peer_count() == 0
            end, 5, "the peer to see the socket closed")
        end)

    it("is closed at the request deadline while the handler reads (504)", function()
        local t0 = socket.gettime()
        local res = get("/wait?t=10&port=" .. PORT)
        local took = socket.gettime() - t0
        -- the read timeout is clamped to the time left: whichever fires first, the answer comes at
        -- the deadline (3 s)
        assert.is_true(took >= 2.9 and took < 4, "answered after " .. took .. " s")
        assert.equal(504, res.status, res.body)
        server.wait_until(function()
            return peer_count() == 0
        end, 2, "the peer to see the socket closed")
    end)

    it("leaves no error in the log (and no sanitizer report)", function()
        s:stop()
        s:assert_no_errors{ "request deadline of 3s passed" }
    end)
end)
