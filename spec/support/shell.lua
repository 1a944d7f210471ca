-- spec/support/shell.lua -- the few process and file helpers every black-box support module needs.
--
--   local shell = require "spec.support.shell"
--   shell.q(s)            -- s quoted for sh
--   shell.sh(cmd)         -- run cmd in sh; returns exit code, combined output
--   shell.read_file(path) -- whole file, or nil
--   shell.alive(pid)      -- true while pid runs (not a zombie)
local shell = {}

function shell.q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function shell.sh(cmd)
    local f = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__rc=$?\""))
    local out = f:read("*a")
    f:close()
    local body, rc = out:match("^(.-)__rc=(%d+)%s*$")
    return tonumber(rc), body
end

function shell.read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

function shell.alive(pid)
    local stat = pid and shell.read_file("/proc/" .. pid .. "/stat")
    local state = stat and stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
end

return shell
