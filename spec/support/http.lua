-- spec/support/http.lua -- a small HTTP/1.1 client for black-box specs, on luasocket.
--
--   local http = require "spec.support.http"
--   local res = assert(http.request{ port = s.port, method = "POST", path = "/x",
--                                    headers = { ["content-type"] = "application/json" },
--                                    body = '{"a":1}', timeout = 5 })
--   res.status, res.headers["x-request-id"], res.body, http.json(res)
--
--   http.request{ unix = "/path/admin.sock", path = "/_host/status" }  -- over a unix socket
--
--   local c = assert(http.connect(s.port))       -- one keep-alive connection
--   local a = assert(http.connect_unix(path))    -- the same, over a unix socket
--   c:request{ path = "/a" }; c:request{ path = "/b" }
--   c:send_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
--   local r1, r2 = c:read_response(), c:read_response()
--   c:close()
--
--   http.get_json(s.port or c, "/path")         -- GET, the decoded JSON of a 200 answer, else raises
--
-- Responses are { status, reason, version, headers (names lower-case; repeated headers joined
-- with ", "), header_list ({name, value} pairs as received), body }. Errors follow the res, err
-- convention: nil, "timeout" | "closed" | "bad response: ...". Nothing here hides server
-- behaviour: no retries, no redirects, no decompression; http.request uses a fresh connection.
local socket = require "socket"
local unix = require "socket.unix"
local cjson = require "cjson.safe"

local concat, insert, tonumber = table.concat, table.insert, tonumber

local http = {}

local Conn = {}
Conn.__index = Conn

local DEFAULT_TIMEOUT = 5

-- Open a connection to host:port (host defaults to 127.0.0.1).
function http.connect(port, host, timeout)
    local sock = socket.tcp()
    sock:settimeout(timeout or DEFAULT_TIMEOUT)
    local ok, err = sock:connect(host or "127.0.0.1", port)
    if not ok then
        sock:close()
        return nil, err
    end
    sock:setoption("tcp-nodelay", true)
    return setmetatable({ sock = sock, port = port, host = host or "127.0.0.1" }, Conn)
end

-- Open a connection to the unix stream socket at path.
function http.connect_unix(path, timeout)
    local sock = unix.stream()
    sock:settimeout(timeout or DEFAULT_TIMEOUT)
    local ok, err = sock:connect(path)
    if not ok then
        sock:close()
        return nil, err
    end
    return setmetatable({ sock = sock, host = "localhost" }, Conn)
end

function Conn:settimeout(t)
    self.sock:settimeout(t)
end

function Conn:send_raw(bytes)
    local _, err = self.sock:send(bytes)
    if err then
        return nil, err
    end
    return true
end

-- Serialise one request: method, path, headers (a table name -> value, or a list of {name, value}
-- for order and repeats), body. Host and Content-Length are added unless given.
function http.format_request(opts, port)
    local method = opts.method or "GET"
    local lines = { method .. " " .. (opts.path or "/") .. " HTTP/" .. (opts.version or "1.1") }
    local have_host, have_length = false, false
    local function add(name, value)
        local lname = name:lower()
        if lname == "host" then
            have_host = true
        elseif lname == "content-length" or lname == "transfer-encoding" then
            have_length = true
        end
        insert(lines, name .. ": " .. tostring(value))
    end
    local h = opts.headers or {}
    if h[1] then
        for _, pair in ipairs(h) do
            add(pair[1], pair[2])
        end
    else
        local names = {}
        for name in pairs(h) do
            insert(names, name)
        end
        table.sort(names) -- deterministic bytes on the wire
        for _, name in ipairs(names) do
            add(name, h[name])
        end
    end
    if not have_host then
        local p = opts.port or port
        insert(lines, 2, "Host: " .. (opts.host or (p and "127.0.0.1" or "localhost")) .. (p and (":" .. p) or ""))
    end
    local body = opts.body
    if body and not have_length then
        insert(lines, "Content-Length: " .. #body)
    end
    return concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

local function receive(sock, pattern)
    local data, err, partial = sock:receive(pattern)
    if not data then
        if err == "closed" and partial and partial ~= "" and pattern == "*a" then
            return partial
        end
        return nil, err
    end
    return data
end

local function read_chunked(sock)
    local parts = {}
    while true do
        local line, err = receive(sock, "*l")
        if not line then
            return nil, err
        end
        local size = tonumber(line:match("^%s*(%x+)"), 16)
        if not size then
            return nil, "bad response: chunk size " .. line
        end
        if size == 0 then
            repeat -- trailers up to the empty line
                line, err = receive(sock, "*l")
                if not line then
                    return nil, err
                end
            until line == ""
            return concat(parts)
        end
        local chunk
        chunk, err = receive(sock, size)
        if not chunk then
            return nil, err
        end
        insert(parts, chunk)
        line, err = receive(sock, "*l")
        if line ~= "" then
            return nil, err or "bad response: no CRLF after chunk"
        end
    end
end

-- Read one response. opts.head = true for the answer to a HEAD request (no body).
function Conn:read_response(opts)
    local sock = self.sock
    local line, err = receive(sock, "*l")
    if not line then
        return nil, err
    end
    local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not version then
        return nil, "bad response: status line " .. line
    end
    local res = {
        version = version,
        status = tonumber(status),
        reason = reason,
        headers = {},
        header_list = {},
    }
    while true do
        line, err = receive(sock, "*l")
        if not line then
            return nil, err
        end
        if line == "" then
            break
        end
        local name, value = line:match("^([^:]+):%s*(.-)%s*$")
        if not name then
            return nil, "bad response: header " .. line
        end
        insert(res.header_list, { name, value })
        name = name:lower()
        res.headers[name] = res.headers[name] and (res.headers[name] .. ", " .. value) or value
    end

    local s = res.status
    local te = res.headers["transfer-encoding"]
    local cl = res.headers["content-length"]
    if (opts and opts.head) or (s >= 100 and s < 200) or s == 204 or s == 304 then
        res.body = ""
    elseif te and te:lower():find("chunked", 1, true) then
        res.body, err = read_chunked(sock)
    elseif cl then
        local n = tonumber(cl)
        if not n then
            return nil, "bad response: content-length " .. cl
        end
        if n == 0 then
            res.body = ""
        else
            res.body, err = receive(sock, n)
        end
    else -- delimited by the server closing the connection
        res.body, err = receive(sock, "*a")
        self.closed = true
    end
    if not res.body then
        return nil, err
    end
    local conn_hdr = (res.headers["connection"] or ""):lower()
    res.keep_alive = not self.closed and conn_hdr ~= "close"
        and (version == "1.1" or conn_hdr == "keep-alive")
    return res
end

-- Send a request on this connection and read its response.
function Conn:request(opts)
    if opts.timeout then
        self.sock:settimeout(opts.timeout)
    end
    local ok, err = self:send_raw(http.format_request(opts, self.port))
    if not ok then
        return nil, err
    end
    return self:read_response({ head = (opts.method or "GET"):upper() == "HEAD" })
end

-- Wait until the server closes the connection; true if it did within the timeout.
function Conn:wait_closed(timeout)
    self.sock:settimeout(timeout or DEFAULT_TIMEOUT)
    local data, err, partial = self.sock:receive("*a")
    return data ~= nil or err == "closed", (data or partial)
end

function Conn:close()
    self.closed = true
    self.sock:close()
end

-- One request on a fresh connection: { port=, host=, method=, path=, headers=, body=, timeout= },
-- or { unix = path, ... } over a unix socket.
function http.request(opts)
    local c, err
    if opts.unix then
        c, err = http.connect_unix(opts.unix, opts.timeout)
    else
        c, err = http.connect(opts.port, opts.host, opts.timeout)
    end
    if not c then
        return nil, err
    end
    local res
    res, err = c:request(opts)
    c:close()
    return res, err
end

-- Decode a response body as JSON; raises with the body shown when it is not JSON.
function http.json(res)
    local v, err = cjson.decode(res.body)
    if v == nil then
        error(("response body is not JSON (%s): %q"):format(tostring(err), tostring(res.body)), 2)
    end
    return v
end

-- GET path on a port (a fresh connection) or an open connection; the decoded JSON of a 200
-- answer. Raises on anything else, with the status and body shown.
function http.get_json(where, path)
    local res, err
    if type(where) == "number" then
        res, err = http.request{ port = where, path = path }
    else
        res, err = where:request{ path = path }
    end
    if res == nil then
        error(("GET %s: %s"):format(path, tostring(err)), 2)
    end
    if res.status ~= 200 then
        error(("GET %s answered %d: %s"):format(path, res.status, tostring(res.body)), 2)
    end
    return http.json(res)
end

return http
