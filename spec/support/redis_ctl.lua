-- spec/support/redis_ctl.lua -- a private redis-server and a load driver for black-box specs.
--
--   local ctl = require "spec.support.redis_ctl"
--   local r = ctl.start()            -- a fresh redis-server: unix socket + a free 127.0.0.1 port
--   r.unix, r.tcp                    -- "unix:/tmp/.../redis.sock", "127.0.0.1:PORT" (fcfs `redis`)
--   r:call("SET", "k", "v")          -- -> value | nil, "ERR ..." (a RESP client on the socket)
--   r:clients()                      -- CLIENT LIST as a list of {field = value} tables
--   r:kill9(); r:restart()           -- kill -9 it; start it again on the same socket and port
--   r:stop()                         -- shut it down, remove its directory
--
--   local results = ctl.fanout{ port = p, paths = { "/a", "/b", ... }, timeout = 10 }
--       -- one connection per path, all requests in flight at once from this process; each result
--       -- is { status =, head =, body = } or { err = "..." }
--   local load = ctl.load{ port = p, concurrency = 20, path = function(i) return "/x?i=" .. i end }
--   load:pump(seconds)               -- keep `concurrency` keep-alive clients busy for a while;
--   load.done                        -- the finished requests: { i, path, status, body, t0, t1, err }
--
-- The server's directory comes from mktemp -d under $TMPDIR (as spec/support/server.lua does) and
-- holds its pid as spawned.pid, so the clean-up of `etc/dev test` kills a server a crashed spec
-- left behind. Replies decode as in host.redis: status and bulk -> string, integer -> number,
-- nil -> ctl.null, arrays -> tables; an error inside an array is { err = "..." }.
-- The socket loops poll non-blocking sockets without socket.select (which cannot take descriptors
-- past FD_SETSIZE), and fanout raises this process's soft descriptor limit when it needs to.
local socket = require "socket"
local unix = require "socket.unix"
local shell = require "spec.support.shell"
local q, sh, read_file, alive = shell.q, shell.sh, shell.read_file, shell.alive

local concat, insert, format = table.concat, table.insert, string.format

local ctl = { null = setmetatable({}, { __tostring = function() return "redis_ctl.null" end }) }




ctl.alive = alive

local function free_port()
    local s = socket.tcp()
    assert(s:bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end
ctl.free_port = free_port

-- RESP ----------------------------------------------------------------------------------------------

local function encode(args)
    local parts = { "*" .. #args .. "\r\n" }
    for i = 1, #args do
        local a = tostring(args[i])
        parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
    end
    return concat(parts)
end

-- -> value, or nil + "ERR ..." for a top-level error reply; raises on a transport error.
local function decode(sock, nested)
    local line, err = sock:receive("*l")
    if not line then
        error("redis_ctl: receive: " .. tostring(err), 0)
    end
    local kind, rest = line:sub(1, 1), line:sub(2)
    if kind == "+" then
        return rest
    elseif kind == "-" then
        if nested then
            return { err = rest }
        end
        return nil, rest
    elseif kind == ":" then
        return tonumber(rest)
    elseif kind == "$" then
        local n = tonumber(rest)
        if n < 0 then
            return ctl.null
        end
        local data, e = sock:receive(n + 2)
        if not data then
            error("redis_ctl: receive: " .. tostring(e), 0)
        end
        return data:sub(1, n)
    elseif kind == "*" then
        local n = tonumber(rest)
        if n < 0 then
            return ctl.null
        end
        local t = {}
        for i = 1, n do
            t[i] = decode(sock, true)
        end
        return t
    end
    error("redis_ctl: bad reply line " .. line, 0)
end

-- the server ---------------------------------------------------------------------------------------

local R = {}
R.__index = R

local function spawn(r)
    local rc, out = sh(format("redis-server %s </dev/null >>%s 2>&1 & echo $! >%s; cat %s",
        q(r.dir .. "/redis.conf"), q(r.dir .. "/stdout.log"), q(r.dir .. "/spawned.pid"),
        q(r.dir .. "/spawned.pid")))
    assert(rc == 0, out)
    r.pid = tonumber(out:match("%d+"))
    local deadline = socket.gettime() + 5
    while socket.gettime() < deadline do
        local ok, pong = pcall(R.call, r, "PING")
        if ok and pong == "PONG" then
            return r
        end
        if not alive(r.pid) then
            break
        end
        socket.sleep(0.02)
    end
    error("redis-server did not come up:\n" .. (read_file(r.dir .. "/redis.log") or "") ..
        (read_file(r.dir .. "/stdout.log") or ""), 3)
end

-- Start a private redis-server (no persistence) listening on a unix socket and a free TCP port.
function ctl.start()
    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-redis.XXXXXX\"")
    dir = dir:gsub("%s+$", "")
    assert(dir:sub(1, 1) == "/", "mktemp failed: " .. dir)
    local r = setmetatable({ dir = dir, sock = dir .. "/redis.sock", port = free_port() }, R)
    r.unix = "unix:" .. r.sock
    r.tcp = "127.0.0.1:" .. r.port
    local f = assert(io.open(dir .. "/redis.conf", "w"))
    f:write(table.concat({
        "bind 127.0.0.1",
        "port " .. r.port,
        "unixsocket " .. r.sock,
        "unixsocketperm 700",
        "daemonize no",
        "dir " .. dir,
        "logfile " .. dir .. "/redis.log",
        "save \"\"",
        "appendonly no",
        "maxclients 4096",
        "",
    }, "\n"))
    f:close()
    return spawn(r)
end

function R:close_conn()
    if self.conn then
        self.conn:close()
        self.conn = nil
    end
end

-- One command over the unix socket (reconnecting when needed): value | nil, "ERR ...".
function R:call(...)
    local args = { ... }
    for attempt = 1, 2 do
        if not self.conn then
            local c = unix()
            c:settimeout(5)
            local ok, err = c:connect(self.sock)
            if not ok then
                c:close()
                error("redis_ctl: connect " .. self.sock .. ": " .. tostring(err), 2)
            end
            self.conn = c
        end
        local ok, err = self.conn:send(encode(args))
        if ok then
            local res = { pcall(decode, self.conn) }
            if res[1] then
                return res[2], res[3]
            end
            err = res[2]
        end
        self:close_conn()
        if attempt == 2 then
            error(tostring(err), 2)
        end
    end
end

-- CLIENT LIST -> { {id=, addr=, name=, cmd=, ...}, ... }
function R:clients()
    local text = assert(self:call("CLIENT", "LIST"))
    local list = {}
    for line in text:gmatch("[^\n]+") do
        local c = {}
        for k, v in line:gmatch("(%S+)=(%S*)") do
            c[k] = v
        end
        insert(list, c)
    end
    return list
end

-- A field of INFO (e.g. "total_connections_received") as a number or string.
function R:info(field)
    local text = assert(self:call("INFO"))
    local v = text:match("\n" .. field .. ":([^\r\n]*)")
    return tonumber(v) or v
end

function R:kill9()
    self:close_conn()
    sh("kill -KILL " .. self.pid)
    local deadline = socket.gettime() + 5
    while alive(self.pid) and socket.gettime() < deadline do
        socket.sleep(0.01)
    end
    assert(not alive(self.pid), "redis-server survived kill -9")
end

function R:restart()
    assert(not alive(self.pid), "redis-server is still running")
    return spawn(self)
end

function R:stop()
    if self.stopped then
        return
    end
    self.stopped = true
    self:close_conn()
    if alive(self.pid) then
        sh("kill -TERM " .. self.pid)
        local deadline = socket.gettime() + 5
        while alive(self.pid) and socket.gettime() < deadline do
            socket.sleep(0.02)
        end
        if alive(self.pid) then
            sh("kill -KILL " .. self.pid)
        end
    end
    if os.getenv("FCFS_TEST_KEEP") ~= "1" then
        sh("rm -rf " .. q(self.dir))
    end
end

-- HTTP load ------------------------------------------------------------------------------------------

-- Make sure this process may hold `need` descriptors (raises the soft limit up to the hard one).
function ctl.ensure_fds(need)
    local ok, ffi = pcall(require, "ffi")
    if not ok then
        return
    end
    pcall(ffi.cdef, "struct fcfs_rlimit { unsigned long cur, max; };"
        .. "int getrlimit(int, struct fcfs_rlimit *); int setrlimit(int, const struct fcfs_rlimit *);")
    local RLIMIT_NOFILE = 7 -- Linux
    local rl = ffi.new("struct fcfs_rlimit")
    if ffi.C.getrlimit(RLIMIT_NOFILE, rl) ~= 0 or rl.cur >= need then
        return
    end
    rl.cur = rl.max < need and rl.max or need
    ffi.C.setrlimit(RLIMIT_NOFILE, rl)
end

local function parse(bytes)
    local head, body = bytes:match("^(.-)\r\n\r\n(.*)$")
    if not head then
        return nil, bytes, ""
    end
    return tonumber(head:match("^HTTP/1%.%d (%d%d%d)")), head, body
end

-- One `Connection: close` request per path, all connected and sent before any is read; results
-- in path order, and the wall time.
function ctl.fanout(opts)
    local paths, timeout = opts.paths, opts.timeout or 10
    local n = #paths
    ctl.ensure_fds(n + 256)
    local t0 = socket.gettime()
    local deadline = t0 + timeout
    local results, socks, parts = {}, {}, {}
    for i = 1, n do
        local s = socket.tcp()
        if not s then
            results[i] = { err = "socket: out of descriptors" }
        else
            s:settimeout(timeout)
            local ok, err = s:connect("127.0.0.1", opts.port)
            if not ok then
                results[i] = { err = "connect: " .. tostring(err) }
                s:close()
            else
                s:setoption("tcp-nodelay", true)
                local _, serr = s:send(format("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                    paths[i], opts.port))
                if serr then
                    results[i] = { err = "send: " .. serr }
                    s:close()
                else
                    s:settimeout(0)
                    socks[i], parts[i] = s, {}
                end
            end
        end
    end
    local left = 0
    for _ in pairs(socks) do
        left = left + 1
    end
    while left > 0 and socket.gettime() < deadline do
        local progress = false
        for i, s in pairs(socks) do
            local data, err, partial = s:receive(65536)
            local got = data or partial
            if got and got ~= "" then
                insert(parts[i], got)
                progress = true
            end
            if err and err ~= "timeout" then
                if err == "closed" then
                    local status, head, body = parse(concat(parts[i]))
                    results[i] = { status = status, head = head, body = body }
                else
                    results[i] = { err = err }
                end
                s:close()
                socks[i] = nil
                left = left - 1
                progress = true
            end
        end
        if not progress then
            socket.sleep(0.002)
        end
    end
    for i, s in pairs(socks) do
        results[i] = { err = "timeout" }
        s:close()
    end
    return results, socket.gettime() - t0
end

-- A steady load: `concurrency` keep-alive clients, each sending its next request as soon as the
-- previous response is complete (Content-Length bodies only, as fcfs sends them).
local L = {}
L.__index = L

function ctl.load(opts)
    local self = setmetatable({ port = opts.port, path = opts.path, n = opts.concurrency or 10,
        timeout = opts.timeout or 5, clients = {}, done = {}, next_i = 0 }, L)
    for k = 1, self.n do
        self.clients[k] = {}
    end
    return self
end

function L:start_request(c)
    if not c.sock then
        local s = socket.tcp()
        s:settimeout(self.timeout)
        local ok, err = s:connect("127.0.0.1", self.port)
        if not ok then
            s:close()
            return err
        end
        s:setoption("tcp-nodelay", true)
        s:settimeout(0)
        c.sock = s
    end
    self.next_i = self.next_i + 1
    local path = self.path(self.next_i)
    c.req = { i = self.next_i, path = path, t0 = socket.gettime() }
    c.buf = ""
    c.sock:settimeout(self.timeout)
    local _, err = c.sock:send(format("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path, self.port))
    c.sock:settimeout(0)
    return err
end

function L:finish(c, err)
    local r = c.req
    r.t1 = socket.gettime()
    r.err = err
    insert(self.done, r)
    c.req = nil
    if err then
        c.sock:close()
        c.sock = nil
    end
end

-- Run the clients for `seconds`; returns the requests finished meanwhile.
function L:pump(seconds)
    local first = #self.done + 1
    local stop = socket.gettime() + seconds
    while socket.gettime() < stop do
        local progress = false
        for _, c in ipairs(self.clients) do
            if not c.req then
                local err = self:start_request(c)
                if err then
                    if c.req then
                        self:finish(c, "send: " .. tostring(err))
                    else
                        insert(self.done, { path = "?", t0 = socket.gettime(), t1 = socket.gettime(),
                            err = "connect: " .. tostring(err) })
                    end
                end
                progress = true
            else
                local data, err, partial = c.sock:receive(65536)
                local got = data or partial
                if got and got ~= "" then
                    c.buf = c.buf .. got
                    progress = true
                end
                local status, head, body = parse(c.buf)
                local len = head and tonumber((head:lower():match("\r\ncontent%-length:%s*(%d+)")))
                if status and (len and #body >= len or status == 204) then
                    c.req.status, c.req.body = status, body:sub(1, len or 0)
                    local close = head:lower():find("\r\nconnection:%s*close")
                    self:finish(c, nil)
                    if close then
                        c.sock:close()
                        c.sock = nil
                    end
                    progress = true
                elseif err and err ~= "timeout" then
                    self:finish(c, err)
                    progress = true
                elseif socket.gettime() - c.req.t0 > self.timeout then
                    self:finish(c, "timeout")
                    progress = true
                end
            end
        end
        if not progress then
            socket.sleep(0.002)
        end
    end
    local got = {}
    for k = first, #self.done do
        got[#got + 1] = self.done[k]
    end
    return got
end

-- Let the requests in flight finish (up to `timeout` s) and close every client.
function L:stop(timeout)
    local stop = socket.gettime() + (timeout or self.timeout)
    local busy = true
    while busy and socket.gettime() < stop do
        busy = false
        for _, c in ipairs(self.clients) do
            if c.req then
                busy = true
                local data, err, partial = c.sock:receive(65536)
                local got = data or partial
                if got and got ~= "" then
                    c.buf = c.buf .. got
                end
                local status, head, body = parse(c.buf)
                local len = head and tonumber((head:lower():match("\r\ncontent%-length:%s*(%d+)")))
                if status and len and #body >= len then
                    c.req.status, c.req.body = status, body:sub(1, len)
                    self:finish(c, nil)
                elseif err and err ~= "timeout" then
                    self:finish(c, err)
                end
            end
        end
        if busy then
            socket.sleep(0.002)
        end
    end
    for _, c in ipairs(self.clients) do
        if c.req then
            self:finish(c, "timeout")
        end
        if c.sock then
            c.sock:close()
            c.sock = nil
        end
    end
end

return ctl
