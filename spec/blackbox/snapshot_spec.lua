-- The master's generation snapshot of lua_dir (host/reload.c) against trees that never end: a
-- run_dir inside lua_dir (each copy lands inside what is being copied) and a symlink loop. Both
-- used to recurse until the stack overflowed (a segfault at start); now the start fails with a
-- message naming the cause.
--
--   FCFS_BIN=build/fcfs busted --lua=luajit spec/blackbox/snapshot_spec.lua
local server = require "spec.support.server"
local shell = require "spec.support.shell"
local raw = require "spec.support.raw"

local format = string.format

describe("the lua_dir snapshot", function()
    local dir

    before_each(function()
        local code, out = shell.sh('mktemp -d "${TMPDIR:-/tmp}/fcfs-snap.XXXXXX"')
        assert(code == 0, out)
        dir = out:match("^%s*(.-)%s*$")
        assert(shell.sh(format("mkdir -p %s/lua && printf 'return {}\\n' >%s/lua/app.lua", shell.q(dir),
            shell.q(dir))) == 0)
    end)

    after_each(function()
        if dir then shell.sh("rm -rf " .. shell.q(dir)) end
    end)

    local function start(run_dir)
        local conf = format("%s/fcfs.lua", dir)
        local f = assert(io.open(conf, "w"))
        f:write(format([[return { listen = "127.0.0.1:%d", workers = 1, admin_listen = "", lua_dir = %q,
            run_dir = %q, pid_file = %q, error_log = %q, access_log = "off" }]], raw.free_port(), dir .. "/lua",
            run_dir, dir .. "/fcfs.pid", dir .. "/error.log"))
        f:close()
        return server.run({ "-c", conf }, {}, { cwd = dir, timeout = 20 })
    end

    it("refuses a run_dir inside lua_dir at start, without crashing", function()
        local rc, out = start(dir .. "/lua/run")
        assert.equal(1, rc, out)
        assert.matches("more than 32 directories deep", out, 1, true)
    end)

    it("refuses a symlink loop in lua_dir at start, without crashing", function()
        assert(shell.sh(format("ln -s .. %s/lua/loop", shell.q(dir))) == 0)
        local rc, out = start(dir .. "/run")
        assert.equal(1, rc, out)
        assert.matches("more than 32 directories deep", out, 1, true)
    end)
end)
