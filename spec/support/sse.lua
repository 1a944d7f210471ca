-- spec/support/sse.lua -- a server-sent events client for black-box specs (a streamed, chunked
-- answer read piece by piece), beside spec/support/http.lua.
--
--   local sse = require "spec.support.sse"
--   local st = assert(sse.open(port, "/events"))   -- st.status, st.headers (names lower-case)
--   local ev, err = st:next(5)     -- { event =, data =, id = } of the next event, or
--                                  -- nil, "end" (the last chunk came: a clean end) | "closed" (the
--                                  -- connection closed inside the body: the stream was cut) |
--                                  -- "timeout"
--   st.comments, st.retry          -- comment lines and the retry field seen so far
--   st:close()
local socket = require "socket"

local insert, concat = table.insert, table.concat

local sse = {}

local Stream = {}
Stream.__index = Stream

local function line(sock)
    local l, err = sock:receive("*l")
    return l, err
end

function sse.open(port, path, headers)
    local sock = socket.tcp()
    sock:settimeout(5)
    local ok, err = sock:connect("127.0.0.1", port)
    if not ok then return nil, err end
    local req = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port, "Accept: text/event-stream" }
    for k, v in pairs(headers or {}) do insert(req, k .. ": " .. v) end
    assert(sock:send(concat(req, "\r\n") .. "\r\n\r\n"))
    local status = line(sock)
    if not status then return nil, "no status line" end
    local st = setmetatable({ sock = sock, status = tonumber(status:match("^HTTP/1%.%d (%d+)")), headers = {},
        buf = "", comments = {}, chunked = false, done = false }, Stream)
    while true do
        local l = line(sock)
        if not l then return nil, "closed in the head" end
        if l == "" then break end
        local k, v = l:match("^([^:]+):%s*(.-)%s*$")
        st.headers[k:lower()] = v
    end
    st.chunked = (st.headers["transfer-encoding"] or ""):lower() == "chunked"
    return st
end

-- Read the next chunk into buf; false, err at the end.
function Stream:fill(deadline)
    if self.done then return false, self.done end
    local left = deadline - socket.gettime()
    if left <= 0 then return false, "timeout" end
    self.sock:settimeout(left)
    if not self.chunked then -- a plain body (an error answer): read it whole
        local n = tonumber(self.headers["content-length"] or 0)
        self.body = n > 0 and self.sock:receive(n) or ""
        self.done = "end"
        return false, "end"
    end
    local size, err = self.sock:receive("*l")
    if not size then
        if err ~= "timeout" then self.done = "closed" end
        return false, err == "timeout" and "timeout" or "closed"
    end
    local n = tonumber(size:match("^(%x+)"), 16)
    if n == 0 then
        self.sock:receive("*l")
        self.done = "end"
        return false, "end"
    end
    local data = self.sock:receive(n)
    local crlf = self.sock:receive("*l")
    if not data or crlf ~= "" then
        self.done = "closed"
        return false, "closed"
    end
    self.buf = self.buf .. data
    return true
end

function Stream:next(timeout)
    local deadline = socket.gettime() + (timeout or 5)
    while true do
        local block, rest = self.buf:match("^(.-)\n\n(.*)$")
        if block then
            self.buf = rest
            local ev, data = {}, {}
            for l in (block .. "\n"):gmatch("(.-)\n") do
                local k, v = l:match("^([^:]*):? ?(.*)$")
                if k == "" then insert(self.comments, v)
                elseif k == "data" then insert(data, v)
                elseif k == "retry" then self.retry = tonumber(v)
                else ev[k] = v end
            end
            if #data > 0 or ev.event then
                ev.data = concat(data, "\n")
                return ev
            end
        else
            local ok, err = self:fill(deadline)
            if not ok then return nil, err end
        end
    end
end

function Stream:close()
    self.sock:close()
end

return sse
