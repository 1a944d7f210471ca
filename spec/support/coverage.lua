-- spec/support/coverage.lua -- a line counter for the repository's lua/ (luacov is not packaged).
--
-- Running this file starts counting in the Lua state that runs it; it does nothing unless
-- $FCFS_LUA_COVERAGE names a directory. `etc/dev test --coverage` runs it
--   * in every VM of the fcfs processes the black-box specs start: spec/support/server.lua passes
--     FCFS_LUA_INIT=<this file> and the host runs that file first in each new VM;
--   * in busted for the unit specs: `busted --helper=spec/support/coverage.lua`.
-- A line hook (JIT off: compiled traces fire no hooks) counts the lines run of the repository's
-- lua/ files, also when the host runs them from a snapshot copy (a spec's own app.lua in its temp
-- directory is not the repository's).
-- The counts go to <dir>/<pid>-<n>.cov as "path<TAB>line<TAB>count" lines, rewritten at most once
-- a second while counting, when the state closes and (in busted) when the suite ends.
-- spec/support/coverage_report.lua merges the files and prints the table.
local dir = os.getenv("FCFS_LUA_COVERAGE")
if not dir or dir == "" or not jit then
    return
end

local ffi = require "ffi"
local getinfo, sethook, time = debug.getinfo, debug.sethook, os.time
local open, rename, format = io.open, os.rename, string.format

ffi.cdef [[
char *realpath(const char *path, char *resolved);
void free(void *p);
int getpid(void);
]]

local function realpath(path)
    local p = ffi.C.realpath(path, nil)
    if p == nil then
        return nil
    end
    local s = ffi.string(p)
    ffi.C.free(p)
    return s
end

local me = realpath((getinfo(1, "S").source:gsub("^@", "")))
if not me then
    return
end
local prefix = me:gsub("/spec/support/coverage%.lua$", "") .. "/lua/"

local function read(path)
    local f = open(path, "rb")
    if not f then
        return nil
    end
    local data = f:read("*a")
    f:close()
    return data
end

-- The repository file a source path stands for: itself when it resolves under <repo>/lua/; else a
-- copy with the same contents at the same place under a lua/ or lua.<generation>/ directory (the
-- host runs each generation from a snapshot of lua_dir, run_dir/lua.N/). nil for anything else,
-- e.g. a spec's own app.lua.
local function repo_file(path)
    local real = realpath(path)
    if not real then
        return nil
    end
    if real:sub(1, #prefix) == prefix then
        return real
    end
    local rel = real:match(".*/lua%.%d+/(.+)$") or real:match(".*/lua/(.+)$")
    local candidate = rel and prefix .. rel
    local mine = candidate and read(real)
    if mine and mine == read(candidate) then
        return candidate
    end
    return nil
end

-- source string (as the VM names it) -> counts table of the repository file, or false
local by_source = {}
local counts = {} -- real path -> { [line] = count }
local out = format("%s/%d-%s.cov", dir, ffi.C.getpid(), tostring(counts):match("0x(%x+)") or "0")

local function flush()
    local f = open(out .. ".tmp", "w")
    if not f then
        return
    end
    for path, lines in pairs(counts) do
        for line, n in pairs(lines) do
            f:write(path, "\t", line, "\t", n, "\n")
        end
    end
    f:close()
    rename(out .. ".tmp", out)
end

local events, last = 0, time()

local function hook(_, line)
    local src = getinfo(2, "S").source
    local c = by_source[src]
    if c == nil then
        c = false
        if src:sub(1, 1) == "@" then
            local path = repo_file(src:sub(2))
            if path then
                c = counts[path] or {}
                counts[path] = c
            end
        end
        by_source[src] = c
    end
    if c then
        c[line] = (c[line] or 0) + 1
    end
    events = events + 1
    if events >= 10000 then
        events = 0
        local now = time()
        if now ~= last then
            last = now
            flush()
        end
    end
end

-- Flush when the state closes (lua_close collects this proxy).
local proxy = newproxy(true)
getmetatable(proxy).__gc = flush
debug.getregistry()["spec.support.coverage"] = proxy

local busted = package.loaded.busted
if busted and busted.subscribe then
    busted.subscribe({ "suite", "end" }, function()
        flush()
        return nil, true
    end)
end

jit.off()
jit.flush()
sethook(hook, "l")
