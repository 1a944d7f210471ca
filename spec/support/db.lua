-- spec/support/db.lua -- MySQL from the test process for black-box specs: an independent client
-- (the `mariadb` command-line tool) to check what fcfs wrote, and private throw-away mariadbd
-- servers a spec may stop and restart.
--
--   local db = require "spec.support.db"
--   local rows = db.query("SELECT id, HEX(v) FROM t")    -- the shared test server (FCFS_TEST_MYSQL_*)
--   rows[1][1], rows[1][2]                               -- every value a string, NULL -> db.NULL
--   db.exec("CREATE DATABASE fcfs_x")                    -- raises with the client's output on error
--   db.fresh("fcfs_x")                                   -- dropped if there, created empty (utf8mb4)
--   db.conf()                                            -- fcfs config keys for the shared server
--
--   local m = db.private()        -- a fresh mariadbd on a unix socket under $TMPDIR (root, no password)
--   m.socket, m:conf{ mysql_database = "x" }, m:query(sql), m:exec(sql)
--   m:stop(); m:start()            -- stop it (clients see the socket vanish); start it on the same socket
--   m:remove()                     -- stop it and delete its directory
--
-- Private servers are run by spec/c/mysql_tmp.sh. Their directory comes from mktemp -d under
-- $TMPDIR and holds the live server's pid as spawned.pid, so the clean-up of `etc/dev test` kills a
-- server a crashed spec left behind. Query results come from `mariadb --batch --raw
-- --skip-column-names`: rows of tab-separated values; values holding tabs or newlines are not
-- supported (select HEX(col) to compare bytes).
local shell = require "spec.support.shell"
local q, sh, read_file = shell.q, shell.sh, shell.read_file

local concat, insert, format = table.concat, table.insert, string.format

local db = { NULL = setmetatable({}, { __tostring = function() return "db.NULL" end }) }


db.sh = sh


local function repo_root()
    local src = debug.getinfo(1, "S").source:gsub("^@", "")
    local dir = src:match("^(.*)/spec/support/[^/]*$") or "."
    if dir:sub(1, 1) ~= "/" then
        local _, pwd = sh("pwd")
        pwd = pwd:gsub("%s+$", "")
        dir = dir == "." and pwd or (pwd .. "/" .. dir:gsub("^%./", ""))
    end
    return dir
end

local MYSQL_TMP = repo_root() .. "/spec/c/mysql_tmp.sh"

-- A client description: { socket=, host=, port=, user=, password=, database= }.
local function shared_client()
    return {
        socket = os.getenv("FCFS_TEST_MYSQL_SOCKET"),
        host = os.getenv("FCFS_TEST_MYSQL_HOST"),
        port = os.getenv("FCFS_TEST_MYSQL_PORT"),
        user = os.getenv("FCFS_TEST_MYSQL_USER") or "fcfs",
        password = os.getenv("FCFS_TEST_MYSQL_PASSWORD") or "",
        database = os.getenv("FCFS_TEST_MYSQL_DATABASE"),
    }
end

-- Run sql through the command-line client; rows (lists of strings, db.NULL) | nil, output.
local function run(client, sql, database)
    local args = { "mariadb --no-defaults --batch --raw --skip-column-names --default-character-set=utf8mb4" }
    if client.socket and client.socket ~= "" then
        insert(args, "--socket=" .. q(client.socket))
    else
        insert(args, "--protocol=tcp --host=" .. q(client.host or "127.0.0.1") .. " --port=" .. q(client.port))
    end
    insert(args, "--user=" .. q(client.user))
    database = database == nil and client.database or database
    if database and database ~= "" then
        insert(args, "--database=" .. q(database))
    end
    insert(args, "-e " .. q(sql))
    insert(args, "</dev/null")
    -- the password goes through the environment, not the command line
    local rc, out = sh("MYSQL_PWD=" .. q(client.password or "") .. " " .. concat(args, " "))
    if rc ~= 0 then
        return nil, out
    end
    local rows = {}
    for line in out:gmatch("([^\n]*)\n") do
        local row = {}
        for v in (line .. "\t"):gmatch("([^\t]*)\t") do
            insert(row, v == "NULL" and db.NULL or v)
        end
        insert(rows, row)
    end
    return rows
end

-- db.query(sql [, database]) on the shared test server; database false: none.
function db.query(sql, database)
    return run(shared_client(), sql, database)
end

-- db.exec(sql [, database]): like db.query, raising on error.
function db.exec(sql, database)
    local rows, err = db.query(sql, database)
    if not rows then
        error("mariadb: " .. tostring(err) .. "\nwhile running: " .. sql, 2)
    end
    return rows
end

-- db.fresh(name): drop the database name if it exists and create it empty (utf8mb4).
function db.fresh(name)
    db.exec(format("DROP DATABASE IF EXISTS %s", name), false)
    db.exec(format("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", name), false)
end

-- The fcfs config keys that point at the shared test server.
function db.conf(over)
    local c = shared_client()
    local conf = {
        mysql_socket = c.socket,
        mysql_host = c.host,
        mysql_port = tonumber(c.port or ""),
        mysql_user = c.user,
        mysql_password = c.password,
        mysql_database = c.database,
    }
    for k, v in pairs(over or {}) do
        conf[k] = v
    end
    return conf
end

-- Poll fn() every 20 ms until it returns a true value or timeout seconds pass; the value or nil.
db.wait_until = require("spec.support.server").wait_until

-- private servers ----------------------------------------------------------------------------------

local P = {}
P.__index = P

function db.private()
    local _, dir = sh("mktemp -d \"${TMPDIR:-/tmp}/fcfs-mysql.XXXXXX\"")
    dir = dir:gsub("%s+$", "")
    assert(dir:sub(1, 1) == "/", "mktemp failed: " .. dir)
    local m = setmetatable({ dir = dir, socket = dir .. "/mysql.sock", user = "root", password = "" }, P)
    m:start()
    return m
end

function P:pid()
    return tonumber((read_file(self.dir .. "/mysqld.pid") or ""):match("%d+"))
end

function P:start()
    local rc, out = sh(format("sh %s start %s", q(MYSQL_TMP), q(self.dir)))
    if rc ~= 0 then
        error("private mariadbd did not start: " .. out .. "\n" .. (read_file(self.dir .. "/error.log") or ""), 2)
    end
    local pid = self:pid()
    if pid then
        local f = assert(io.open(self.dir .. "/spawned.pid", "w"))
        f:write(pid, "\n")
        f:close()
    end
    self.running = true
end

function P:stop()
    sh(format("sh %s stop %s", q(MYSQL_TMP), q(self.dir)))
    os.remove(self.dir .. "/spawned.pid")
    self.running = false
end

function P:remove()
    if self.removed then
        return
    end
    self:stop()
    self.removed = true
    if os.getenv("FCFS_TEST_KEEP") ~= "1" then
        sh("rm -rf " .. q(self.dir))
    end
end

function P:query(sql, database)
    return run({ socket = self.socket, user = self.user, password = self.password }, sql, database or false)
end

function P:exec(sql, database)
    local rows, err = self:query(sql, database)
    if not rows then
        error("mariadb: " .. tostring(err) .. "\nwhile running: " .. sql, 2)
    end
    return rows
end

-- fcfs config keys that point at this server.
function P:conf(over)
    local conf = { mysql_socket = self.socket, mysql_user = self.user, mysql_password = self.password }
    for k, v in pairs(over or {}) do
        conf[k] = v
    end
    return conf
end

return db
