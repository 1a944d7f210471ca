-- spec/support/tcp_peer.lua -- a throwaway TCP server for the host.tcp specs, run as its own
-- process (`luajit spec/support/tcp_peer.lua PORTFILE`) so that it serves while the spec waits on
-- fcfs. It listens on 127.0.0.1 and writes "<port> <hold_port>\n" to PORTFILE when ready.
--
-- The main port speaks a line protocol (one command per line, CRLF or LF):
--   ECHO text             -> "text\r\n"
--   LINES a b c           -> "a\r\nb\r\nc\r\n" in one write
--   DRIP delay text       -> "text\r\n" in 3-byte pieces, `delay` seconds apart
--   PARTIAL text          -> "text" (no line end), then closes
--   BIG n                 -> n bytes "x", then "\r\n"
--   SILENT                -> nothing, ever
--   STALL                 -> nothing, and the connection is never read from again
--   COUNT                 -> the number of other open connections, stalled ones left out
--   QUIT                  -> "bye\r\n", then closes
-- Clients are served concurrently (socket.select; pending writes are scheduled, never slept on).
--
-- hold_port is a listener with a backlog of 0 that never accepts, its queue filled by one
-- connection of the peer's own: connecting to it hangs until the connector times out.
local socket = require "socket"

local insert, remove = table.insert, table.remove

local portfile = assert(arg[1], "usage: tcp_peer.lua PORTFILE")

local function listener(backlog)
    local s = assert(socket.tcp())
    assert(s:bind("127.0.0.1", 0))
    assert(s:listen(backlog))
    local _, port = s:getsockname()
    return s, tonumber(port)
end

local server, port = listener(32)
server:settimeout(0)
local hold, hold_port = listener(0)
hold:settimeout(0) -- never accepted from; open until the process ends
local filler = assert(socket.tcp())
filler:settimeout(1)
assert(filler:connect("127.0.0.1", hold_port))

local clients = {} -- socket -> { buf = "" }
local nclients = 0 -- not stalled
local queue = {}   -- { at = t, c = socket, data = bytes, close = bool }, kept sorted by at

local function schedule(at, c, data, close)
    local i = #queue + 1
    while i > 1 and queue[i - 1].at > at do
        i = i - 1
    end
    insert(queue, i, { at = at, c = c, data = data, close = close })
end

local function drop(c)
    if clients[c] then
        if not clients[c].stalled then
            nclients = nclients - 1
        end
        clients[c] = nil
    end
    for i = #queue, 1, -1 do
        if queue[i].c == c then
            remove(queue, i)
        end
    end
    c:close()
end

local function command(c, line)
    local now = socket.gettime()
    local cmd, rest = line:match("^(%u+)%s?(.*)$")
    if cmd == "ECHO" then
        schedule(now, c, rest .. "\r\n")
    elseif cmd == "LINES" then
        local out = {}
        for w in rest:gmatch("%S+") do
            insert(out, w .. "\r\n")
        end
        schedule(now, c, table.concat(out))
    elseif cmd == "DRIP" then
        local delay, text = rest:match("^(%S+)%s(.*)$")
        local data = text .. "\r\n"
        for i = 1, #data, 3 do
            schedule(now + (i - 1) / 3 * tonumber(delay), c, data:sub(i, i + 2))
        end
    elseif cmd == "PARTIAL" then
        schedule(now, c, rest, true)
    elseif cmd == "BIG" then
        schedule(now, c, string.rep("x", tonumber(rest)) .. "\r\n")
    elseif cmd == "STALL" then
        clients[c].stalled = true
        nclients = nclients - 1
    elseif cmd == "COUNT" then
        schedule(now, c, (nclients - 1) .. "\r\n")
    elseif cmd == "QUIT" then
        schedule(now, c, "bye\r\n", true)
    elseif cmd ~= "SILENT" then
        schedule(now, c, "ERR unknown command\r\n")
    end
end

local function readable(c)
    local data, err, partial = c:receive(8192)
    data = data or partial
    if data and data ~= "" then
        local st = clients[c]
        st.buf = st.buf .. data
        while not st.stalled do
            local line, more = st.buf:match("^(.-)\r?\n(.*)$")
            if not line then
                break
            end
            st.buf = more
            command(c, line)
        end
    end
    if err == "closed" then
        drop(c)
    end
end

local f = assert(io.open(portfile .. ".tmp", "w"))
f:write(port, " ", hold_port, "\n")
f:close()
assert(os.rename(portfile .. ".tmp", portfile))

while true do
    local now = socket.gettime()
    while queue[1] and queue[1].at <= now do
        local q = remove(queue, 1)
        if clients[q.c] then
            q.c:settimeout(1)
            q.c:send(q.data)
            q.c:settimeout(0)
            if q.close then
                drop(q.c)
            end
        end
    end
    local wait = queue[1] and math.max(0, queue[1].at - now) or 1
    local set = { server }
    for c, st in pairs(clients) do
        if not st.stalled then
            insert(set, c)
        end
    end
    local ready = socket.select(set, nil, wait)
    for _, s in ipairs(ready) do
        if s == server then
            local c = server:accept()
            if c then
                c:settimeout(0)
                clients[c] = { buf = "" }
                nclients = nclients + 1
            end
        elseif clients[s] then
            readable(s)
        end
    end
end
