-- spec/support/raw.lua -- raw-socket helpers for black-box specs, beside spec/support/http.lua.
--
--   local raw = require "spec.support.raw"
--   raw.free_port()                              -- a 127.0.0.1 port nothing listens on (now)
--   local results, elapsed = raw.fanout{ port = p, n = 100, request = bytes, timeout = 5 }
--       -- n connections, the same request bytes on each (or requests[i] on the i-th), all in
--       -- flight at once from this one process (non-blocking sockets + socket.select); each result is
--       -- { status = 200, head = "...", body = "..." } or { err = "timeout" | "closed" | ... }
--   raw.parse(bytes)                             -- status, head, body of one whole response
--   raw.metric(text, 'name{label="v"}')          -- the value of one sample of Prometheus text
--
-- fanout expects requests that end the connection (`Connection: close`): a response is complete
-- when the server closes. Nothing here retries or hides a server failure.
local socket = require "socket"

local concat, insert = table.concat, table.insert

local raw = {}

function raw.free_port()
    local s = socket.tcp()
    assert(s:bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

-- Split one complete response (as received up to the server's close) into status, head, body.
function raw.parse(bytes)
    local head, body = bytes:match("^(.-)\r\n\r\n(.*)$")
    if not head then
        return nil, bytes, ""
    end
    local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
    return status, head, body
end

-- The value of the first sample whose name and labels are exactly `sample` (e.g.
-- 'fcfs_requests_total{route="/hello",status="200"}'); nil when absent.
function raw.metric(text, sample)
    for line in text:gmatch("[^\n]+") do
        if line:sub(1, #sample + 1) == sample .. " " then
            return tonumber(line:sub(#sample + 2))
        end
    end
    return nil
end

-- n connections, each sent `request` at once, then all read concurrently until the server closes
-- each one (or timeout seconds pass). Returns the results (in connection order) and the wall time
-- from the first connect to the last close.
function raw.fanout(opts)
    local n, timeout = opts.n, opts.timeout or 10
    local host = opts.host or "127.0.0.1"
    local t0 = socket.gettime()
    local deadline = t0 + timeout
    local results, socks, parts, pending, index = {}, {}, {}, {}, {}
    for i = 1, n do
        local s = socket.tcp()
        s:settimeout(timeout)
        local ok, err = s:connect(host, opts.port)
        if not ok then
            results[i] = { err = "connect: " .. tostring(err) }
            s:close()
        else
            s:setoption("tcp-nodelay", true)
            socks[i], parts[i] = s, {}
        end
    end
    for i = 1, n do
        local s = socks[i]
        if s then
            local _, err = s:send(opts.requests and opts.requests[i] or opts.request)
            if err then
                results[i] = { err = "send: " .. err }
                s:close()
                socks[i] = nil
            else
                s:settimeout(0)
                insert(pending, s)
                index[s] = i
            end
        end
    end
    while #pending > 0 do
        local left = deadline - socket.gettime()
        if left <= 0 then
            break
        end
        local readable = socket.select(pending, nil, math.min(left, 0.5))
        for _, s in ipairs(readable or {}) do
            local i = index[s]
            local data, err, partial = s:receive(65536)
            local got = data or partial
            if got and got ~= "" then
                insert(parts[i], got)
            end
            if err == "closed" then
                local bytes = concat(parts[i])
                local status, head, body = raw.parse(bytes)
                results[i] = { status = status, head = head, body = body }
                s:close()
                index[s] = nil
                for k = #pending, 1, -1 do
                    if pending[k] == s then
                        table.remove(pending, k)
                    end
                end
            elseif err and err ~= "timeout" then
                results[i] = { err = err }
                s:close()
                index[s] = nil
                for k = #pending, 1, -1 do
                    if pending[k] == s then
                        table.remove(pending, k)
                    end
                end
            end
        end
    end
    local elapsed = socket.gettime() - t0
    for _, s in ipairs(pending) do
        results[index[s]] = { err = "timeout" }
        s:close()
    end
    return results, elapsed
end

return raw
