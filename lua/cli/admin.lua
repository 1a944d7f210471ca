-- cli/admin.lua: administrators, from the command line only (never through the API).
--
--   fcfs -c etc/fcfs.lua run lua/cli/admin.lua create EMAIL [NAME]
--
-- Creates a verified ADMIN. The password comes from FCFS_ADMIN_PASSWORD when it is set, else from
-- one line of standard input; the signup rules apply to the email and the password. Exit status 0
-- when created, 1 on bad input, 2 when the email is taken, 3 on a backend error.
local users = require "users"

local USAGE = "usage: fcfs -c FILE run lua/cli/admin.lua create EMAIL [NAME]"

local function say(...)
    io.stderr:write("admin: ", ...)
    io.stderr:write("\n")
end

local cmd, email, name = ...
if cmd ~= "create" or not email then
    say(USAGE)
    return 1
end

local password = os.getenv("FCFS_ADMIN_PASSWORD")
if not password or password == "" then
    password = io.read("*l")
end

local v, err = users.admin_input(email, password or "")
if not v then
    say(err)
    return 1
end

local uid
uid, err = users.create_admin(v.email, v.password, name)
if not uid then
    say("cannot create ", v.email, ": ", tostring(err))
    return err == "email taken" and 2 or 3
end
io.stdout:write("admin ", v.email, " created, id ", tostring(uid), "\n")
return 0
