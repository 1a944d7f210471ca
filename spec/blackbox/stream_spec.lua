-- Black-box specs of streamed answers (host.stream, web.lua's {stream = fn} responses): server-sent
-- events chunk by chunk, the connection kept for the next request, the stream's own lifetime
-- instead of request_timeout, backpressure with a timeout on every write, and the ways a stream
-- ends: cleanly at a reload and at a graceful stop, cut when its handler raises, cancelled when
-- the client goes away.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/stream_spec.lua
local socket = require "socket"
local server = require "spec.support.server"
local http = require "spec.support.http"
local raw = require "spec.support.raw"
local sse = require "spec.support.sse"
local shell = require "spec.support.shell"

local APP = [[
local web = require "lib.web"
local host = require "host"
local tonumber, tostring, rep, format = tonumber, tostring, string.rep, string.format
local app = web.new()
app:get("/healthz", function() return { json = { status = "ok" } } end)
app:get("/metrics", function() return { body = host.metrics_text() } end)

app:get("/count", function(req)
    local n = tonumber(req:arg("n")) or 3
    return { stream = function(send)
        for i = 1, n do
            send(web.sse("tick", "line " .. i .. "\nsecond", i))
            host.sleep(0.02)
        end
    end }
end)

app:get("/ticks", function(req)
    local tag = req:arg("tag") or "-"
    return { stream = function(send)
        while not host.exiting() do
            if not send(web.sse("tick", tostring(host.generation))) then
                host.log("warn", "send failed ", tag)
                return
            end
            host.sleep(0.05)
        end
        host.log("warn", "stream over ", tag)
    end }
end)

app:get("/pings", function()
    return { stream = function(send)
        for _ = 1, 8 do
            local pong, err = host.redis.call("PING")
            send(web.sse("ping", format("%s %.2f", tostring(pong or err), host.time_left())))
            host.sleep(0.1)
        end
    end }
end)

app:get("/flood", function()
    local chunk = rep("x", 65536)
    return { stream = function(send)
        local t0 = host.now()
        while true do
            local ok, err = send(chunk)
            if not ok then
                host.log("warn", "flood ended: ", err, format(" after %.1f", host.now() - t0))
                return
            end
        end
    end }
end)

app:get("/raise", function()
    return { stream = function(send)
        send(web.sse("a", "1"))
        host.sleep(0.05)
        error("stream-boom-5c2e")
    end }
end)

app:get("/plain", function() return { json = { ok = true } } end)
return app
]]

local ALLOWED = { "stream%-boom%-5c2e" }

local function eventually(fn, timeout, what)
    local deadline = socket.gettime() + timeout
    while socket.gettime() < deadline do
        local v = fn()
        if v then return v end
        socket.sleep(0.05)
    end
    error("timed out waiting for " .. what, 2)
end

-- Events until the stream ends: the list and how it ended ("end" | "closed" | "timeout").
local function drain(st, timeout)
    local evs = {}
    while true do
        local ev, err = st:next(timeout)
        if not ev then return evs, err end
        evs[#evs + 1] = ev
    end
end

describe("streamed answers", function()
    local s

    lazy_setup(function()
        s = server.start { app = APP, conf = { request_timeout = 0.3, stream_timeout = 1,
            stream_send_timeout = 0.5, drain_timeout = 5 } }
    end)

    lazy_teardown(function()
        if s then s:stop() end
    end)

    it("sends server-sent events chunk by chunk, ends with the last chunk and keeps the connection", function()
        local st = assert(sse.open(s.port, "/count?n=3"))
        assert.equal(200, st.status)
        assert.equal("text/event-stream", st.headers["content-type"])
        assert.equal("chunked", st.headers["transfer-encoding"])
        assert.equal("no-cache", st.headers["cache-control"])
        assert.is_nil(st.headers["content-length"])
        local evs, how = drain(st, 3)
        assert.equal("end", how)
        assert.equal(3, #evs)
        assert.same({ event = "tick", id = "3", data = "line 3\nsecond" }, evs[3])
        -- the same connection serves the next request
        assert(st.sock:send("GET /plain HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert.matches("^HTTP/1%.1 200", st.sock:receive("*l"))
        st:close()
    end)

    it("sends an HTTP/1.0 client the events as they are, the close ending the body", function()
        local c = socket.tcp()
        c:settimeout(5)
        assert(c:connect("127.0.0.1", s.port))
        assert(c:send("GET /count?n=2 HTTP/1.0\r\n\r\n"))
        local all = assert(c:receive("*a"))
        c:close()
        local head, body = all:match("^(.-)\r\n\r\n(.*)$")
        assert.matches("^HTTP/1%.1 200", head)
        assert.is_nil(head:lower():find("transfer-encoding", 1, true))
        assert.is_nil(head:lower():find("content-length", 1, true))
        assert.matches("connection: close", head:lower())
        assert.equal("event: tick\nid: 1\ndata: line 1\ndata: second\n\n"
            .. "event: tick\nid: 2\ndata: line 2\ndata: second\n\n", body)
    end)

    it("outlives request_timeout and ends cleanly at stream_timeout", function()
        local t0 = socket.gettime()
        local st = assert(sse.open(s.port, "/ticks?tag=lifetime"))
        local evs, how = drain(st, 5)
        local took = socket.gettime() - t0
        st:close()
        assert.equal("end", how)
        assert.truthy(took > 0.8 and took < 4, "lasted " .. took)
        assert.truthy(#evs >= 5)
    end)

    it("clamps the handler's I/O to the stream's lifetime, not to request_timeout", function()
        local st = assert(sse.open(s.port, "/pings"))
        local evs, how = drain(st, 5)
        st:close()
        assert.equal("end", how)
        assert.equal(8, #evs)
        for _, ev in ipairs(evs) do assert.matches("^PONG ", ev.data) end -- past request_timeout (0.3 s) too
        -- host.time_left() and the I/O timeouts follow stream_timeout (1 s), not request_timeout
        assert.truthy(tonumber(evs[1].data:match(" (.*)")) > 0.5, evs[1].data)
    end)

    it("is cut (no last chunk) when its handler raises", function()
        local st = assert(sse.open(s.port, "/raise"))
        local evs, how = drain(st, 5)
        st:close()
        assert.equal(1, #evs)
        assert.equal("closed", how)
    end)

    it("cancels the handler when the client goes away", function()
        local st = assert(sse.open(s.port, "/ticks?tag=gone-1"))
        assert(st:next(2))
        eventually(function() return (raw.metric(s:metrics(), "fcfs_requests_in_flight") or 0) >= 2 end, 5,
            "the stream to be in flight")
        st:close()
        eventually(function() return raw.metric(s:metrics(), "fcfs_requests_in_flight") == 1 end, 5,
            "the stream to end")
        socket.sleep(0.2)
        assert.is_nil(s:error_log():find("stream over gone-1", 1, true), "the handler ran on")
        assert.is_nil(s:error_log():find("send failed gone-1", 1, true), "the handler ran on")
    end)

    it("gives a slow client stream_send_timeout per write, then send returns nil, \"timeout\"", function()
        local c = socket.tcp()
        c:setoption("keepalive", false)
        assert(c:connect("127.0.0.1", s.port))
        assert(c:send("GET /flood HTTP/1.1\r\nHost: x\r\n\r\n"))
        -- never read: the kernel buffers fill, the writes queue up, send waits, then gives up
        local line = eventually(function() return s:error_log():match("flood ended: ([^\n]*)") end, 10,
            "the flood to end")
        c:close()
        assert.matches("^timeout after", line)
    end)

    it("ends cleanly at a reload (the handler sees host.exiting())", function()
        local st = assert(sse.open(s.port, "/ticks?tag=reload"))
        local first = assert(st:next(2))
        s:signal("HUP")
        local evs, how = drain(st, 5)
        st:close()
        assert.equal("end", how)
        for _, ev in ipairs(evs) do assert.equal(first.data, ev.data) end -- all from the old generation
        eventually(function() return s:error_log():find("stream over reload", 1, true) end, 5, "the log line")
    end)

    it("ends cleanly at a graceful stop, and the node exits before drain_timeout", function()
        local st = assert(sse.open(s.port, "/ticks?tag=quit"))
        assert(st:next(2))
        local pid = s:pid()
        local t0 = socket.gettime()
        s:signal("QUIT")
        local _, how = drain(st, 5)
        st:close()
        assert.equal("end", how)
        eventually(function() return not shell.alive(pid) end, 4, "the node to exit")
        assert.truthy(socket.gettime() - t0 < 4)
        s:stop()
        s:assert_no_errors(ALLOWED)
    end)
end)

-- also through the plain client: a stream read whole is a chunked body
describe("streamed answers through spec/support/http.lua", function()
    it("reads as one chunked body", function()
        local s = server.start { app = APP }
        local res = assert(http.request{ port = s.port, path = "/count?n=2" })
        s:stop()
        assert.equal("event: tick\nid: 1\ndata: line 1\ndata: second\n\n"
            .. "event: tick\nid: 2\ndata: line 2\ndata: second\n\n", res.body)
    end)
end)
