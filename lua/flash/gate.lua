-- flash/gate.lua: the node's stock gate of the flash purchase -- host.stock when the host has it.
--
-- TEMPORARY: until host.stock lands, a stand-in with the same functions on the shared dictionary
-- host.shared.catalog (else per worker). It is not atomic across workers (an update reads, compares
-- versions, writes) and costs a dictionary lock per call, so it is only a stand-in; delete it once
-- host.stock is on main.
--   get(id) -> remaining, sold_out, version, paused, age | nil
--   sold_out(id) -> boolean
--   update(id, remaining, version [, paused]) -> true | false (older version) | nil, "full"
--   forget(id); list() -> {{id=, remaining=, version=, paused=}, ...}
local host = require "host"

local tonumber, tostring, match, format = tonumber, tostring, string.match, string.format

local stock = host.stock
if stock then return stock end

local _M = {}

local worker_dict = { data = {} }
function worker_dict:get(k) return self.data[k] end
function worker_dict:set(k, v)
    self.data[k] = v
    return true
end
function worker_dict:delete(k)
    self.data[k] = nil
    return true
end

local function dict()
    local shared = host.shared
    return shared and shared.catalog or worker_dict
end

local known = {} -- ids this worker has seen (list() of the stand-in)

local function read(id)
    local v = dict():get("fg:" .. tostring(id))
    if not v then return nil end
    local r, ver, p, at = match(v, "^(-?%d+)|(%d+)|(%d)|(.+)$")
    return tonumber(r), tonumber(ver), p == "1", tonumber(at)
end

function _M.get(id)
    local r, ver, paused, at = read(id)
    if not r then return nil end
    return r, r <= 0 and not paused, ver, paused, host.now() - at
end

function _M.sold_out(id)
    local r, _, paused = read(id)
    return r ~= nil and r <= 0 and not paused
end

function _M.update(id, remaining, version, paused)
    local r, ver, was_paused = read(id)
    if r and ver > version then return false end
    if paused == nil then paused = (r and ver == version) and was_paused or false end
    local ok, err = dict():set("fg:" .. tostring(id), format("%d|%d|%d|%.3f", remaining, version, paused and 1 or 0,
        host.now()))
    if not ok then return nil, err end
    known[id] = true
    return true
end

function _M.forget(id)
    dict():delete("fg:" .. tostring(id))
    known[id] = nil
end

function _M.list()
    local out = {}
    for id in pairs(known) do
        local r, ver, paused = read(id)
        if r then out[#out + 1] = { id = id, remaining = r, version = ver, paused = paused } end
    end
    return out
end

return _M
