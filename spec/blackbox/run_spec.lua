-- Black-box specs of `fcfs -c FILE run SCRIPT.lua [ARGS...]`: the real binary with a test config
-- (Redis and MySQL from FCFS_TEST_*, exported by `etc/dev test`) runs scripts written under its
-- Lua directory. Covered: the exit code from the script's return value, the arguments as `...`,
-- modules required from lua_dir, host I/O that yields (a timer runs while the script sleeps),
-- Redis and MySQL seen by the script (checked with independent clients), a traceback and exit 1 on
-- an error, no app.lua needed.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/run_spec.lua
local server = require "spec.support.server"
local shell = require "spec.support.shell"
local db = require "spec.support.db"

local format = string.format

-- redis-cli on the test Redis: its output without the trailing newline.
local function redis_cli(args)
    local addr = assert(os.getenv("FCFS_TEST_REDIS"), "FCFS_TEST_REDIS is not set")
    local where
    if addr:sub(1, 5) == "unix:" then
        where = "-s " .. shell.q(addr:sub(6))
    else
        local h, p = addr:match("^(.*):(%d+)$")
        where = format("-h %s -p %s", shell.q(h), p)
    end
    local rc, out = shell.sh("redis-cli " .. where .. " " .. args)
    assert(rc == 0, out)
    return (out:gsub("%s+$", ""))
end

describe("fcfs run", function()
    local s

    -- Run the script src (written as lua/cli/<name>.lua) with args; exit code, output.
    local function run(name, src, args)
        s:write_lua("cli/" .. name .. ".lua", src)
        local words = { "run", s.lua_dir .. "/cli/" .. name .. ".lua" }
        for _, a in ipairs(args or {}) do
            words[#words + 1] = a
        end
        return s:cli(words)
    end

    setup(function()
        s = server.start{
            lua_files = { ["runspec_mod.lua"] = "return { twice = function(x) return 2 * x end }\n" },
        }
    end)

    teardown(function()
        s:stop()
    end)

    it("exits with the script's return value", function()
        local cases = {
            { "return 7", 7 }, { "return 0", 0 }, { "return true", 0 }, { "return false", 1 },
            { "return nil", 0 }, { "local x = 1", 0 }, { "return 300", 1 },
        }
        for i, c in ipairs(cases) do
            local code, out = run("exit" .. i, c[1])
            assert.equal(c[2], code, c[1] .. ": " .. out)
        end
    end)

    it("passes the arguments as ... and finds modules in lua_dir", function()
        local code, out = run("args", [[
local mod = require "runspec_mod"
local n = select("#", ...)
local a, b = ...
io.write("n=", n, " a=", a, " b=", b, " twice=", mod.twice(tonumber(a)), "\n")
return n
]], { "21", "two words" })
        assert.equal(2, code, out)
        assert.matches("n=2 a=21 b=two words twice=42", out, 1, true)
    end)

    it("runs as a task: host I/O yields and the loop goes on meanwhile", function()
        local code, out = run("yield", [[
local host = require "host"
local fired = false
host.timer.at(0.01, function() fired = true end)
host.sleep(0.1)
io.write("fired=", tostring(fired), "\n")
return fired and 0 or 3
]])
        assert.equal(0, code, out)
        assert.matches("fired=true", out, 1, true)
    end)

    it("offers the rest of the host module: a password hash off the loop", function()
        local code, out = run("crypto", [[
local crypto = require("host").crypto
local h = crypto.password_hash("correct horse")
io.write("verify=", tostring(crypto.password_verify(h, "correct horse")),
    " wrong=", tostring(crypto.password_verify(h, "wrong")), "\n")
return 0
]])
        assert.equal(0, code, out)
        assert.matches("verify=true wrong=false", out, 1, true)
    end)

    it("answers password_verify with nil, \"out of memory\" when argon2 cannot get its memory", function()
        -- the script caps its own address space (RLIMIT_AS, through the FFI) under the 1 GiB the
        -- hash asks for, then lifts the cap
        local code, out = run("crypto_oom", [==[
local ffi = require("ffi")
local crypto = require("host").crypto
ffi.cdef[[
struct runspec_rlimit { unsigned long cur, max; };
int getrlimit(int, struct runspec_rlimit *);
int setrlimit(int, const struct runspec_rlimit *);
]]
local RLIMIT_AS = 9
local costly = "$argon2id$v=19$m=1048576,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$"
    .. "q7oyL5WvLM8uNfNkOGXkGpqOfMmk4Dg+eBtNiKOSHr0"
local warm = crypto.password_hash("warm") -- the pool's threads exist before the cap
local f = assert(io.open("/proc/self/status"))
local vm = tonumber(f:read("*a"):match("VmSize:%s*(%d+) kB")) * 1024
f:close()
local old = ffi.new("struct runspec_rlimit")
assert(ffi.C.getrlimit(RLIMIT_AS, old) == 0)
assert(ffi.C.setrlimit(RLIMIT_AS, ffi.new("struct runspec_rlimit", vm + 256 * 1024 * 1024, old.max)) == 0)
local ok, err = crypto.password_verify(costly, "x")
assert(ffi.C.setrlimit(RLIMIT_AS, old) == 0)
io.write("ok=", tostring(ok), " err=", tostring(err), " again=", tostring(crypto.password_verify(warm, "warm")), "\n")
return 0
]==])
        assert.equal(0, code, out)
        assert.matches("ok=nil err=out of memory again=true", out, 1, true)
    end)

    it("answers host.reload() with false: there is no node to reload", function()
        local code, out = run("reload", [[
local ok, _, err = require("host").reload()
io.write("ok=", tostring(ok), " err=", tostring(err), "\n")
]])
        assert.equal(0, code, out)
        assert.matches("ok=false err=no serving worker", out, 1, true)
    end)

    it("sees Redis and MySQL", function()
        local key = format("runspec:%d:%d", os.time(), math.random(1e6))
        local code, out = run("backends", [[
local host = require "host"
local key, value = ...
assert(host.redis.call("SET", key, value) == "OK")
local back = assert(host.redis.call("GET", key))
local rows = assert(host.mysql.query("SELECT 1 AS one, DATABASE() AS db"))
io.write("back=", back, " one=", rows[1].one, " db=", rows[1].db, "\n")
return 0
]], { key, "value from the script" })
        assert.equal(0, code, out)
        assert.matches("back=value from the script one=1", out, 1, true)
        assert.equal("value from the script", redis_cli("GET " .. shell.q(key)))
        local dbname = db.query("SELECT DATABASE()")[1][1]
        assert.matches("db=" .. dbname, out, 1, true)
        redis_cli("DEL " .. shell.q(key))
    end)

    it("prints a traceback and exits 1 when the script fails", function()
        local code, out = run("fails", [[
local function inner() error("run-marker-5d1e") end
local function outer() inner() end
outer()
return 0
]])
        assert.equal(1, code, out)
        assert.matches("fails.lua:1: run%-marker%-5d1e", out)
        assert.matches("stack traceback:", out, 1, true)
        assert.matches("in function 'outer'", out, 1, true)
    end)

    it("refuses global assignments and reports a script that does not load", function()
        local code, out = run("global", "leaked = 1\n")
        assert.equal(1, code, out)
        assert.matches("assignment to undeclared global 'leaked'", out, 1, true)
        code, out = run("syntax", "local x = = 1\n")
        assert.equal(1, code, out)
        assert.matches("syntax.lua:1:", out, 1, true)
        code, out = s:cli{ "run", s.dir .. "/no-such-script.lua" }
        assert.equal(1, code, out)
        assert.matches("no-such-script.lua", out, 1, true)
    end)

    it("does not need a loadable app.lua", function()
        s:write_lua("app.lua", "error('this app does not load')\n")
        local code, out = run("noapp", "return 5")
        assert.equal(5, code, out)
    end)

    it("leaves no error in the server's log", function()
        s:stop()
        s:assert_no_errors()
    end)
end)
